//! `strata`: the single binary that runs any Strata role. With no arguments
//! it runs every role in one process on `./data` (`-target=all`).

mod config;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::routing::get;
use config::{Command, Config};
use prometheus::Registry;
use strata_api::AppState;
use strata_distributor::Distributor;
use strata_ingester::Ingester;
use strata_ingester::logs::LogIngester;
use strata_promql::{Engine, EngineOptions};
use strata_querier::Querier;
use strata_querier::logs::LogQuerier;
use strata_storage::{BlockCatalog, BlockReader, Signal, build_store};

// The write path allocates many small label strings per request on many
// threads; glibc malloc spent ~45% of ingest CPU in a profile
// (docs/benchmarks.md), mimalloc a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cfg = match config::load(std::env::args().collect()) {
        Ok(Command::Run(cfg)) => cfg,
        Ok(Command::Help(h)) => {
            println!("{h}");
            return std::process::ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("strata {}", env!("CARGO_PKG_VERSION"));
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("strata: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(&cfg);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(*cfg)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "strata stopped with an error");
            eprintln!("strata: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.server.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cfg.server.log_format == "json" {
        builder.json().init();
    } else {
        builder.compact().init();
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn run(cfg: Config) -> Result<(), BoxError> {
    let roles: Vec<&str> = cfg.target.split(',').map(str::trim).collect();
    if roles != ["all"] {
        return Err(format!(
            "-target={} is not available yet: separate roles need distributed mode; run -target=all",
            cfg.target
        )
        .into());
    }
    let registry = Registry::new();
    strata_ingester::register_metrics(&registry)?;
    strata_distributor::register_metrics(&registry)?;
    strata_querier::register_metrics(&registry)?;
    strata_api::register_metrics(&registry)?;
    strata_limits::register_metrics(&registry)?;
    strata_ruler::register_metrics(&registry)?;
    strata_compactor::register_metrics(&registry)?;

    let overrides = Arc::new(strata_limits::Overrides::new(cfg.limits.clone()));
    if !cfg.runtime_config.file.is_empty() {
        overrides.watch_file(
            cfg.runtime_config.file.clone().into(),
            cfg.runtime_config.period,
        )?;
    }

    let store = build_store(&cfg.blocks_storage.store)?;
    let reader = Arc::new(BlockReader::new(store.clone()));
    let compactor = Arc::new(strata_compactor::Compactor::new(
        cfg.compactor.clone(),
        store.clone(),
        reader.clone(),
        overrides.clone(),
    ));
    compactor.check_config()?;
    let catalog = Arc::new(BlockCatalog::new(
        reader.clone(),
        Signal::Metrics,
        cfg.blocks_storage.bucket_store.sync_interval,
    ));
    let log_catalog = Arc::new(BlockCatalog::new(
        reader,
        Signal::Logs,
        cfg.blocks_storage.bucket_store.sync_interval,
    ));
    let mut tsdb = cfg.blocks_storage.tsdb.clone();
    tsdb.out_of_order_time_window = cfg.limits.out_of_order_time_window;
    let log_tsdb = tsdb.clone();
    let max_chunk_age = cfg.ingester.max_chunk_age;
    let ingester = Arc::new(tokio::task::spawn_blocking(move || Ingester::open(tsdb)).await??);
    let log_ingester = Arc::new(
        tokio::task::spawn_blocking(move || LogIngester::open(&log_tsdb, max_chunk_age)).await??,
    );

    let distributor = Arc::new(Distributor::new(
        overrides.clone(),
        ingester.clone(),
        log_ingester.clone(),
    ));
    let log_querier = Arc::new(LogQuerier::new(
        log_ingester.clone(),
        log_catalog.clone(),
        overrides.clone(),
    ));
    let engine = Engine::new(EngineOptions {
        lookback_delta: cfg.querier.lookback_delta,
        max_samples: cfg.querier.max_samples,
        timeout: cfg.querier.timeout,
        default_subquery_step: cfg.querier.default_evaluation_interval,
        ..EngineOptions::default()
    });
    let querier = Arc::new(Querier::new(
        ingester.clone(),
        catalog.clone(),
        engine,
        overrides.clone(),
    ));
    let ruler = strata_ruler::Ruler::new(
        cfg.ruler.clone(),
        store.clone(),
        querier.clone(),
        log_querier.clone(),
        distributor.clone(),
        overrides.clone(),
    );
    let ready = Arc::new(AtomicBool::new(false));
    let state = Arc::new(AppState {
        ruler: Some(ruler.clone()),
        distributor,
        querier,
        log_querier,
        registry,
        multitenancy_enabled: cfg.multitenancy_enabled,
        max_recv_msg_size: cfg.distributor.max_recv_msg_size,
        ready: ready.clone(),
    });
    let shown = serde_yaml::to_string(&redacted(&cfg)).unwrap_or_default();
    let app = strata_api::router(state).route(
        "/config",
        get(move || {
            let shown = shown.clone();
            async move { shown }
        }),
    );

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let cutter = tokio::spawn(
        ingester
            .clone()
            .run_cutter(catalog.clone(), shutdown_rx.clone()),
    );
    let log_cutter = tokio::spawn(
        log_ingester
            .clone()
            .run_cutter(log_catalog.clone(), shutdown_rx.clone()),
    );
    tokio::spawn(compactor.clone().run(shutdown_rx.clone()));
    tokio::spawn(ruler.run(shutdown_rx));

    let host = if cfg.server.http_listen_address.is_empty() {
        "0.0.0.0"
    } else {
        cfg.server.http_listen_address.as_str()
    };
    let addr: SocketAddr = format!("{host}:{}", cfg.server.http_listen_port)
        .parse()
        .map_err(|e| {
            format!(
                "bad HTTP listen address {host}:{}: {e}",
                cfg.server.http_listen_port
            )
        })?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    // Queriers read the bucket index; rebuild it before serving so blocks
    // uploaded by an earlier run (whose WAL is gone) are visible at once.
    if let Err(e) = compactor
        .write_bucket_indexes(strata_ingester::now_ms())
        .await
    {
        tracing::warn!(error = %e, "writing bucket indexes at start-up failed; queriers list the bucket");
    }
    ready.store(true, Ordering::Release);
    tracing::info!(%addr, target = %cfg.target, "strata is ready");

    let stop = shutdown_signal();
    let server = axum::serve(listener, app).with_graceful_shutdown(stop);
    server.await?;

    tracing::info!("shutting down");
    ready.store(false, Ordering::Release);
    let _ = shutdown_tx.send(true);
    let _ = cutter.await;
    let _ = log_cutter.await;
    let grace = cfg.server.graceful_shutdown_timeout;
    let flush = async {
        ingester.shutdown(&catalog).await?;
        log_ingester.shutdown(&log_catalog).await
    };
    match tokio::time::timeout(grace, flush).await {
        Ok(r) => r?,
        Err(_) => tracing::warn!("head flush did not finish in time; the WAL keeps the data"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// The config as shown on `/config`, with secrets masked.
fn redacted(cfg: &Config) -> Config {
    let mut c = cfg.clone();
    if !c.blocks_storage.store.s3.secret_access_key.is_empty() {
        c.blocks_storage.store.s3.secret_access_key = "********".into();
    }
    c
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
