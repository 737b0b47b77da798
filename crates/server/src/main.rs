//! `strata`: the single binary that runs any Strata role. With no arguments
//! it runs every role in one process on `./data` (`-target=all`).

mod config;
mod http_server;
mod ring_page;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use config::{Command, Config};
use prometheus::Registry;
use strata_api::AppState;
use strata_api::admission::{Admission, AdmissionConfig};
use strata_api::startup::Startup;
use strata_distributor::Distributor;
use strata_ingester::Ingester;
use strata_ingester::LogIngester;
use strata_ingester::grpc::{IngesterPool, IngesterService, ServedIngesters};
use strata_promql::{Engine, EngineOptions};
use strata_querier::Querier;
use strata_querier::logs::LogQuerier;
use strata_ring::raft::{RaftNode, VoterConfig};
use strata_ring::{InstanceState, Lifecycler, Ring};
use strata_storage::instrumented::instrumented;
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
        Ok(Command::Verified(cfg)) => {
            return match Roles::parse(&cfg.target) {
                Ok(_) => {
                    println!("configuration OK");
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("strata: {e}");
                    std::process::ExitCode::from(2)
                }
            };
        }
        Err(e) => {
            eprintln!("strata: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let tracing_export = match init_logging(&cfg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("strata: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Queries are bounded in depth (strata_model::nesting), and their
        // evaluation recurses once per level: 8 MiB (virtual, touched only
        // as used) leaves a wide margin over the deepest allowed query.
        .thread_stack_size(8 << 20)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(*cfg));
    if let Some(t) = tracing_export {
        t.shutdown();
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "strata stopped with an error");
            eprintln!("strata: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr and, when the OTEL_* variables ask, spans over OTLP.
fn init_logging(cfg: &Config) -> Result<Option<strata_telemetry::Tracing>, BoxError> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // openraft logs every election step at info; keep its warnings.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{},openraft=warn", cfg.server.log_level))
        });
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt = if cfg.server.log_format == "json" {
        fmt.json().boxed()
    } else {
        fmt.compact().boxed()
    };
    let instance = if cfg.ring.instance_id.is_empty() {
        strata_ring::hostname()
    } else {
        cfg.ring.instance_id.clone()
    };
    let (otlp, export) = match strata_telemetry::otlp_layer(&instance, &cfg.target)? {
        // Strata's own spans whatever the log level (-log.level quiets
        // logs, not traces); other crates' spans (Raft, HTTP/2) are noise.
        Some((layer, export)) => (
            Some(
                layer.with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("strata", tracing::Level::INFO),
                ),
            ),
            Some(export),
        ),
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otlp)
        .init();
    Ok(export)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Roles this process runs.
#[derive(Debug, Clone, Copy, Default)]
struct Roles {
    distributor: bool,
    ingester: bool,
    querier: bool,
    compactor: bool,
    ruler: bool,
    store_gateway: bool,
    query_frontend: bool,
}

impl Roles {
    fn parse(target: &str) -> Result<Self, BoxError> {
        let mut r = Roles::default();
        for role in target.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match role {
                "all" => {
                    r = Roles {
                        distributor: true,
                        ingester: true,
                        querier: true,
                        compactor: true,
                        ruler: true,
                        store_gateway: true,
                        query_frontend: true,
                    }
                }
                "distributor" => r.distributor = true,
                "ingester" => r.ingester = true,
                "querier" => r.querier = true,
                "compactor" => r.compactor = true,
                "ruler" => r.ruler = true,
                "store-gateway" => r.store_gateway = true,
                "query-frontend" => r.query_frontend = true,
                other => {
                    return Err(format!(
                        "unknown role {other:?} in -target (roles: all, distributor, ingester, querier, query-frontend, compactor, ruler, store-gateway)"
                    )
                    .into());
                }
            }
        }
        Ok(r)
    }

    fn names(&self) -> Vec<String> {
        [
            (self.distributor, "distributor"),
            (self.ingester, "ingester"),
            (self.querier, "querier"),
            (self.compactor, "compactor"),
            (self.ruler, "ruler"),
            (self.store_gateway, "store-gateway"),
            (self.query_frontend, "query-frontend"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| n.to_string())
        .collect()
    }
}

/// `host:port` from a listen address (empty or 0.0.0.0 means 127.0.0.1 to
/// others unless `-ring.instance-addr` says otherwise) and a port.
fn advertised(instance_addr: &str, listen: &str, port: u16) -> String {
    if !instance_addr.is_empty() {
        return if instance_addr.contains(':') {
            instance_addr.to_string()
        } else {
            format!("{instance_addr}:{port}")
        };
    }
    let host = if listen.is_empty() || listen == "0.0.0.0" {
        "127.0.0.1"
    } else {
        listen
    };
    format!("{host}:{port}")
}

async fn bind(host: &str, port: u16, what: &str) -> Result<tokio::net::TcpListener, BoxError> {
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|e| format!("bad {what} listen address {host}:{port}: {e}"))?;
    Ok(tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))?)
}

async fn run(cfg: Config) -> Result<(), BoxError> {
    let roles = Roles::parse(&cfg.target)?;
    let registry = Registry::new();
    strata_ingester::register_metrics(&registry)?;
    strata_distributor::register_metrics(&registry)?;
    strata_querier::register_metrics(&registry)?;
    strata_store_gateway::register_metrics(&registry)?;
    strata_frontend::register_metrics(&registry)?;
    strata_api::register_metrics(&registry)?;
    strata_limits::register_metrics(&registry)?;
    strata_ruler::register_metrics(&registry)?;
    strata_compactor::register_metrics(&registry)?;
    strata_storage::cache::register_metrics(&registry)?;
    strata_storage::instrumented::register_metrics(&registry)?;
    // CPU, resident memory, open files and threads: what every dashboard of
    // a Prometheus-world process shows, under the names it expects.
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    let build_info = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "strata_build_info",
            "1, labelled with the version of Strata and the roles (-target) this process runs.",
        ),
        &["version", "target"],
    )?;
    build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION"), cfg.target.as_str()])
        .set(1);
    registry.register(Box::new(build_info))?;

    // The HTTP port answers from the first second: /health at once, /ready
    // with what start-up waits for, everything else once it is built.
    let startup = Arc::new(Startup::new("starting"));
    let listener = bind(
        &cfg.server.http_listen_address,
        cfg.server.http_listen_port,
        "HTTP",
    )
    .await?;
    let addr = listener.local_addr()?;
    let full_app: Arc<std::sync::OnceLock<axum::Router>> = Arc::new(std::sync::OnceLock::new());
    let timeouts = http_server::HttpTimeouts {
        read: cfg.server.http_server_read_timeout,
        idle: cfg.server.http_server_idle_timeout,
    };
    let server = tokio::spawn(http_server::serve(
        listener,
        http_server::starting(startup.clone(), registry.clone(), full_app.clone()),
        timeouts,
        shutdown_signal(),
    ));
    tracing::info!(%addr, "HTTP port open; starting");

    // Before any connection to another role is made.
    strata_proto::transport::set_client_tls(&cfg.ingester_client.tls)?;
    let grpc_tls = strata_proto::transport::server_tls(&cfg.server.grpc_tls)?;
    let authenticator = if cfg.auth.tokens_file.is_empty() {
        None
    } else {
        Some(strata_api::auth::Authenticator::watch_file(
            cfg.auth.tokens_file.clone().into(),
            cfg.auth.tokens_reload_period,
            cfg.multitenancy_enabled,
        )?)
    };

    let overrides = Arc::new(strata_limits::Overrides::new(cfg.limits.clone()));
    if !cfg.runtime_config.file.is_empty() {
        overrides.watch_file(
            cfg.runtime_config.file.clone().into(),
            cfg.runtime_config.period,
        )?;
    }

    let store = instrumented(build_store(&cfg.blocks_storage.store)?, "hot");
    let mut reader = BlockReader::new(store.clone());
    if !cfg.blocks_storage.warm.backend.is_empty() {
        let mut warm = instrumented(build_store(&cfg.blocks_storage.warm)?, "warm");
        // Only the roles that answer queries read warm blocks often enough
        // to be worth a cache (the compactor reads each one once); a
        // store-gateway's warm reads go through it too.
        if roles.querier || roles.ruler || roles.store_gateway {
            warm =
                strata_storage::cache::cached(warm, &cfg.blocks_storage.warm_cache, "warm-blocks")
                    .await?;
        }
        reader = reader.with_warm(warm);
    }
    let reader = Arc::new(reader);
    // A store-gateway reads the blocks it owns through a cache of its own
    // (the warm tier's reads are cached already).
    let gateway_reader = if roles.store_gateway {
        let hot = strata_storage::cache::cached(store.clone(), &cfg.store_gateway.cache, "blocks")
            .await?;
        let mut r = BlockReader::new(hot);
        if let Some(warm) = reader.store_of(strata_storage::Tier::Warm) {
            r = r.with_warm(warm.clone());
        }
        Some(Arc::new(r))
    } else {
        None
    };
    let compactor = strata_compactor::Compactor::new(
        cfg.compactor.clone(),
        store.clone(),
        reader.clone(),
        overrides.clone(),
    );
    compactor.check_config()?;
    if cfg.blocks_storage.bucket_store.ignore_deletion_marks_delay >= cfg.compactor.deletion_delay {
        return Err(format!(
            "-blocks-storage.bucket-store.ignore-deletion-marks-delay ({:?}) must be shorter than -compactor.deletion-delay ({:?}): queriers would read blocks after their files are deleted",
            cfg.blocks_storage.bucket_store.ignore_deletion_marks_delay, cfg.compactor.deletion_delay
        )
        .into());
    }
    let catalog = Arc::new(
        BlockCatalog::new(
            reader.clone(),
            Signal::Metrics,
            cfg.blocks_storage.bucket_store.sync_interval,
        )
        .with_ignore_deletion_marks_delay(
            cfg.blocks_storage.bucket_store.ignore_deletion_marks_delay,
        ),
    );
    let log_catalog = Arc::new(
        BlockCatalog::new(
            reader.clone(),
            Signal::Logs,
            cfg.blocks_storage.bucket_store.sync_interval,
        )
        .with_ignore_deletion_marks_delay(
            cfg.blocks_storage.bucket_store.ignore_deletion_marks_delay,
        ),
    );
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);

    // The ring: a voter of the Raft group when this process's gRPC address
    // is in -ring.raft.peers or -ring.raft.voter is set (or the only voter
    // when the list is empty), otherwise a watcher of the voters.
    let distributed = !cfg.ring.raft.peers.is_empty();
    let grpc_addr = advertised(
        &cfg.ring.instance_addr,
        &cfg.server.grpc_listen_address,
        cfg.server.grpc_listen_port,
    );
    let http_addr = advertised(
        "",
        &cfg.server.http_listen_address,
        cfg.server.http_listen_port,
    );
    let instance_id = if cfg.ring.instance_id.is_empty() {
        strata_ring::hostname()
    } else {
        cfg.ring.instance_id.clone()
    };
    let mut ring_cfg = cfg.ring.clone();
    if !distributed {
        ring_cfg.raft.peers = vec![grpc_addr.clone()];
    }
    let voter = !distributed || cfg.ring.raft.voter || ring_cfg.raft.peers.contains(&grpc_addr);
    let ring = match voter {
        true => {
            startup.set_phase("starting this process's Raft voter of the ring");
            let (node, desc) = RaftNode::start(VoterConfig {
                dir: cfg.ring.raft.dir.clone().into(),
                addr: grpc_addr.clone(),
                seeds: ring_cfg.raft.peers.clone(),
                bootstrap: ring_cfg.raft.peers.first() == Some(&grpc_addr),
                heartbeat_interval: cfg.ring.raft.heartbeat_interval,
            })
            .await?;
            Ring::from_voter(node, desc, ring_cfg)
        }
        false => Ring::watching(ring_cfg, instance_id.clone(), shutdown_rx.clone()),
    };
    registry.register(Box::new(strata_ring::metrics::RingCollector::new(
        ring.clone(),
    )?))?;
    // Only a cluster needs the gRPC server; a lone `all` process keeps to
    // its HTTP port, so several can run side by side.
    let grpc_listener = if distributed || !(roles.distributor && roles.ingester && roles.querier) {
        Some(
            bind(
                &cfg.server.grpc_listen_address,
                cfg.server.grpc_listen_port,
                "gRPC",
            )
            .await?,
        )
    } else {
        None
    };
    // The gRPC server starts at once: voters must answer Raft before this
    // process can register; the ingester service answers UNAVAILABLE
    // until the WAL is replayed (no distributor routes to a JOINING one).
    let served = Arc::new(ServedIngesters::default());
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = grpc_tls {
        builder = builder.tls_config(tls)?;
    }
    // Every call in a span that continues the caller's trace; nothing
    // logged per call.
    let mut builder = builder.layer(
        tower_http::trace::TraceLayer::new_for_grpc()
            .make_span_with(strata_telemetry::grpc_server_span)
            .on_request(())
            .on_response(())
            .on_body_chunk(())
            .on_eos(())
            .on_failure(()),
    );
    let mut grpc =
        builder.add_optional_service(roles.ingester.then(|| {
            IngesterService::server(served.clone(), catalog.clone(), log_catalog.clone())
        }));
    if let Some(r) = &gateway_reader {
        grpc = grpc.add_service(strata_store_gateway::StoreGatewayService::server(r.clone()));
    }
    // Old data written through this process's distributor retires its
    // query-frontend's cached answers of the tenant at once.
    let write_generations = (roles.query_frontend && roles.distributor).then(|| {
        Arc::new(strata_model::freshness::WriteGenerations::new(
            cfg.frontend.max_cache_freshness.as_millis() as i64,
        ))
    });
    let frontend = if roles.query_frontend {
        let mut fcfg = cfg.frontend.clone();
        fcfg.timeout = cfg.querier.timeout;
        fcfg.multitenancy = cfg.multitenancy_enabled;
        fcfg.max_samples = cfg.querier.max_samples;
        Some(
            strata_frontend::Frontend::new(fcfg, overrides.clone(), write_generations.clone())
                .await?,
        )
    } else {
        None
    };
    if let Some(f) = &frontend {
        grpc = grpc.add_service(strata_frontend::service::FrontendService::server(f.clone()));
    }
    if let Some((raft_svc, ring_svc)) = strata_ring::service::services(&ring) {
        grpc = grpc.add_service(raft_svc).add_service(ring_svc);
    }
    let grpc_server = grpc_listener.map(|listener| {
        let mut shutdown = shutdown_rx.clone();
        tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            if let Err(e) = grpc
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = shutdown.changed().await;
                })
                .await
            {
                tracing::error!(error = %e, "gRPC server failed");
            }
        })
    });

    let compactor = Arc::new(compactor.with_shard(strata_ring::shard::Shard::new(
        ring.clone(),
        instance_id.clone(),
        "compactor",
    )));

    let registration = |state, owns_tokens| strata_ring::lifecycle::Registration {
        id: instance_id.clone(),
        roles: if roles.names().len() == 7 {
            vec!["all".to_string()]
        } else {
            roles.names()
        },
        grpc_addr: grpc_addr.clone(),
        http_addr: http_addr.clone(),
        owns_tokens,
        state,
    };
    let register_wait = std::time::Duration::from_secs(300);
    startup.set_phase(format!(
        "joining the ring (waiting for the Raft group of {:?})",
        cfg.ring.raft.peers
    ));
    let lifecycler = Lifecycler::register(
        ring.clone(),
        // Ingesters replay their WAL and store-gateways load their blocks
        // before they take traffic; both own tokens.
        registration(
            if roles.ingester || roles.store_gateway {
                InstanceState::Joining
            } else {
                InstanceState::Active
            },
            roles.ingester || roles.store_gateway,
        ),
        register_wait,
    )
    .await?;

    let mut ingester = None;
    let mut log_ingester = None;
    if roles.ingester {
        let mut tsdb = cfg.blocks_storage.tsdb.clone();
        tsdb.out_of_order_time_window = cfg.limits.out_of_order_time_window;
        let log_tsdb = tsdb.clone();
        let max_chunk_age = cfg.ingester.max_chunk_age;
        let report = {
            let startup = startup.clone();
            move |text: String| startup.set_phase(text)
        };
        let report_logs = report.clone();
        ingester = Some(Arc::new(
            tokio::task::spawn_blocking(move || Ingester::open_reporting(tsdb, &report)).await??,
        ));
        log_ingester = Some(Arc::new(
            tokio::task::spawn_blocking(move || {
                LogIngester::open_reporting(&log_tsdb, max_chunk_age, &report_logs)
            })
            .await??,
        ));
    }
    if let (Some(ing), Some(log_ing)) = (&ingester, &log_ingester) {
        for s in ing.recently_shipped() {
            catalog.add(&s.tenant, s.meta).await;
        }
        for s in log_ing.recently_shipped() {
            log_catalog.add(&s.tenant, s.meta).await;
        }
        let _ = served.metrics.set(ing.clone());
        let _ = served.logs.set(log_ing.clone());
        registry.register(Box::new(strata_ingester::TenantSeriesCollector::new(
            ing.clone(),
            log_ing.clone(),
        )?))?;
    }
    let block_sync = gateway_reader.as_ref().map(|r| {
        Arc::new(strata_store_gateway::BlockSync::new(
            ring.clone(),
            strata_store_gateway::SyncConfig {
                instance_id: instance_id.clone(),
                replication_factor: cfg.store_gateway.sharding_ring.replication_factor,
                interval: cfg.blocks_storage.bucket_store.sync_interval,
            },
            store.clone(),
            catalog.clone(),
            log_catalog.clone(),
            r.clone(),
        ))
    });
    if let Some(sync) = &block_sync {
        // Ownership is computed over the ring as this process sees it: it
        // must see itself first.
        startup.set_phase("waiting for this store-gateway to show in the ring");
        lifecycler
            .wait_visible(std::time::Duration::from_secs(30))
            .await;
        startup.set_phase("loading the blocks this store-gateway owns");
        match sync.sync().await {
            Ok([metrics, logs]) => {
                tracing::info!(
                    metric_blocks = metrics,
                    log_blocks = logs,
                    "store-gateway loaded its blocks"
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "loading this store-gateway's blocks failed; they are read on demand and loaded at the next sync")
            }
        }
    }
    if roles.ingester || roles.store_gateway {
        lifecycler.set_state(InstanceState::Active).await?;
    }
    startup.set_phase("waiting for this instance to show in the local view of the ring");
    if !lifecycler
        .wait_visible(std::time::Duration::from_secs(30))
        .await
    {
        tracing::warn!(
            "this instance's ring entry is not visible locally after 30s; starting anyway"
        );
    }
    tokio::spawn(lifecycler.clone().run(shutdown_rx.clone()));

    let pool = Arc::new(
        IngesterPool::new(
            ingester.clone().zip(log_ingester.clone()).map(|(m, l)| {
                (
                    instance_id.clone(),
                    strata_ingester::grpc::Local::shared(m, l),
                )
            }),
            cfg.querier.timeout,
            cfg.ingester_client.remote_timeout,
            &cfg.ingester_client.grpc_compression,
        )
        .map_err(|e| format!("-ingester.client.grpc-compression: {e}"))?,
    );
    let mut distributor = Distributor::new(overrides.clone(), ring.clone(), pool.clone());
    if let Some(g) = &write_generations {
        distributor = distributor.with_write_generations(g.clone());
    }
    let distributor = Arc::new(distributor);
    // Queriers (and rulers) read blocks through the ring's store-gateways,
    // this process's own directly.
    let block_reads = Arc::new(strata_store_gateway::StoreGateways::new(
        ring.clone(),
        gateway_reader.clone().unwrap_or_else(|| reader.clone()),
        roles.store_gateway.then(|| instance_id.clone()),
        cfg.store_gateway.sharding_ring.replication_factor,
        cfg.querier.timeout,
    ));
    let log_querier = Arc::new(
        LogQuerier::new(
            ring.clone(),
            pool.clone(),
            log_catalog.clone(),
            block_reads.clone(),
            overrides.clone(),
        )
        .with_timeout(cfg.querier.timeout),
    );
    let engine = Engine::new(EngineOptions {
        lookback_delta: cfg.querier.lookback_delta,
        max_samples: cfg.querier.max_samples,
        max_subquery_steps: cfg.querier.max_subquery_steps,
        max_memory_bytes: cfg.querier.max_estimated_memory_consumption_per_query,
        timeout: cfg.querier.timeout,
        default_subquery_step: cfg.querier.default_evaluation_interval,
        selection_slice: cfg.querier.selection_split_interval,
        ..EngineOptions::default()
    });
    let querier = Arc::new(Querier::new(
        ring.clone(),
        pool,
        catalog.clone(),
        block_reads,
        engine,
        overrides.clone(),
    ));
    let ruler = roles.ruler.then(|| {
        strata_ruler::Ruler::new(
            cfg.ruler.clone(),
            store.clone(),
            querier.clone(),
            log_querier.clone(),
            distributor.clone(),
            overrides.clone(),
            Some(strata_ring::shard::Shard::new(
                ring.clone(),
                instance_id.clone(),
                "ruler",
            )),
        )
    });
    let shown_config = redacted(&cfg);
    let status = Arc::new(strata_api::StatusInfo {
        config_yaml: serde_yaml::to_string(&shown_config).unwrap_or_default(),
        flags: config::flag_values(&shown_config),
        started: std::time::SystemTime::now(),
        storage_retention: cfg.limits.compactor_blocks_retention_period,
        query_sharding: cfg.frontend.parallelize_shardable_queries,
    });
    let ruler_ring = ring.clone();
    let state = Arc::new(AppState {
        status: status.clone(),
        ruler: ruler.clone(),
        rulers: Arc::new(move || ruler_ring.http_addrs("ruler")),
        distributor,
        querier,
        log_querier,
        registry,
        multitenancy_enabled: cfg.multitenancy_enabled,
        max_recv_msg_size: cfg.distributor.max_recv_msg_size,
        ready: startup.clone(),
        admission: Admission::new(AdmissionConfig {
            max_inflight_push_requests: cfg.distributor.instance_limits.max_inflight_push_requests,
            max_inflight_push_requests_bytes: cfg
                .distributor
                .instance_limits
                .max_inflight_push_requests_bytes,
            max_concurrent_queries: cfg.querier.max_concurrent,
            max_outstanding_requests_per_tenant: cfg.querier.max_outstanding_requests_per_tenant,
            query_queue_timeout: cfg.querier.timeout,
        }),
    });
    let api_app = strata_api::router(state)
        .route(
            "/config",
            get(move || {
                let shown = status.config_yaml.clone();
                async move { shown }
            }),
        )
        .merge(ring_page::router(ring.clone()));
    // Mimir's store-gateway status page: the blocks this gateway owns.
    let api_app = match &block_sync {
        Some(sync) => {
            let sync = sync.clone();
            api_app.route(
                "/store-gateway/tenants",
                get(move || {
                    let owned = sync.owned_by_tenant();
                    async move {
                        let tenants: Vec<serde_json::Value> = owned
                            .into_iter()
                            .map(|(tenant, (metrics, logs))| {
                                serde_json::json!({"tenant": tenant, "metric_blocks": metrics, "log_blocks": logs})
                            })
                            .collect();
                        axum::Json(serde_json::json!({"tenants": tenants}))
                    }
                }),
            )
        }
        None => api_app,
    };
    // Queriers pull requests from the ring's query-frontends and run them
    // with their own API (not through a frontend again).
    if roles.querier {
        tokio::spawn(strata_frontend::worker::run(
            ring.clone(),
            api_app.clone(),
            strata_frontend::worker::WorkerConfig {
                querier_id: instance_id.clone(),
                parallelism: cfg.querier.max_concurrent.max(1),
                own_frontend: frontend.as_ref().map(|_| grpc_addr.clone()),
            },
            shutdown_rx.clone(),
        ));
        // This process's own frontend is served in-process.
        if let Some(f) = &frontend {
            tokio::spawn(strata_frontend::worker::run_local(
                f.clone(),
                api_app.clone(),
                instance_id.clone(),
                cfg.querier.max_concurrent.max(1),
                shutdown_rx.clone(),
            ));
        }
    }
    // A query-frontend answers the read paths itself.
    let app = match &frontend {
        Some(f) => api_app.layer(axum::middleware::from_fn_with_state(
            f.clone(),
            strata_frontend::Frontend::intercept,
        )),
        None => api_app,
    };
    // Outermost: nothing is served to an unauthenticated request.
    let app = match authenticator {
        Some(auth) => app.layer(axum::middleware::from_fn_with_state(
            auth,
            strata_api::auth::authenticate,
        )),
        None => app,
    };

    let mut cutters = Vec::new();
    if let (Some(ing), Some(log_ing)) = (&ingester, &log_ingester) {
        cutters.push(tokio::spawn(
            ing.clone().run_cutter(catalog.clone(), shutdown_rx.clone()),
        ));
        cutters.push(tokio::spawn(
            log_ing
                .clone()
                .run_cutter(log_catalog.clone(), shutdown_rx.clone()),
        ));
    }
    if roles.compactor {
        tokio::spawn(compactor.clone().run(shutdown_rx.clone()));
    }
    if let Some(sync) = block_sync.clone() {
        tokio::spawn(sync.run(shutdown_rx.clone()));
    }
    if let Some(r) = &ruler {
        tokio::spawn(r.clone().run(shutdown_rx.clone()));
    }

    // Queriers read the bucket index; rebuild it before serving so blocks
    // uploaded by an earlier run (whose WAL is gone) are visible at once.
    startup.set_phase("writing the bucket indexes");
    if roles.compactor
        && let Err(e) = compactor
            .write_bucket_indexes(strata_ingester::now_ms())
            .await
    {
        tracing::warn!(error = %e, "writing bucket indexes at start-up failed; queriers list the bucket");
    }
    // Every route is installed before /ready says so.
    let _ = full_app.set(app);
    startup.set_phase("serving");
    startup.set_ready(true);
    tracing::info!(%addr, grpc = %grpc_addr, instance = %instance_id, target = %cfg.target, "strata is ready");

    if let Err(e) = server.await {
        tracing::error!(error = %e, "the HTTP server stopped with an error");
    }

    tracing::info!("shutting down");
    startup.set_phase("shutting down");
    startup.set_ready(false);
    if let (Some(ing), Some(log_ing)) = (&ingester, &log_ingester) {
        // LEAVING: no new writes routed here; reads still are, while the
        // head is flushed to blocks. Then LEFT.
        if let Err(e) = lifecycler.set_state(InstanceState::Leaving).await {
            tracing::warn!(error = %e, "could not mark this ingester LEAVING in the ring");
        }
        let grace = cfg.server.graceful_shutdown_timeout;
        let flush = async {
            ing.shutdown(&catalog).await?;
            log_ing.shutdown(&log_catalog).await
        };
        let _ = shutdown_tx.send(true);
        for c in cutters {
            let _ = c.await;
        }
        match tokio::time::timeout(grace, flush).await {
            Ok(r) => r?,
            Err(_) => tracing::warn!("head flush did not finish in time; the WAL keeps the data"),
        }
        if let Err(e) = lifecycler.set_state(InstanceState::Left).await {
            tracing::warn!(error = %e, "could not mark this ingester LEFT in the ring");
        }
    } else {
        if roles.store_gateway {
            // Queriers stop asking this gateway at once, not after its
            // heartbeat times out.
            if let Err(e) = lifecycler.set_state(InstanceState::Left).await {
                tracing::warn!(error = %e, "could not mark this store-gateway LEFT in the ring");
            }
        }
        let _ = shutdown_tx.send(true);
    }
    if let Some(mut h) = grpc_server {
        // Watch streams of other processes never end on their own.
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut h)
            .await
            .is_err()
        {
            h.abort();
        }
    }
    if let Some(v) = ring.voter() {
        v.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The config as shown on `/config`, with secrets masked.
fn redacted(cfg: &Config) -> Config {
    let mut c = cfg.clone();
    for store in [&mut c.blocks_storage.store, &mut c.blocks_storage.warm] {
        for secret in [
            &mut store.s3.secret_access_key,
            &mut store.gcs.service_account,
            &mut store.azure.account_key,
        ] {
            if !secret.is_empty() {
                *secret = "********".into();
            }
        }
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
