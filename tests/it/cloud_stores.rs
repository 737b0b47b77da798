//! Blocks in Azure Blob Storage, against Azurite (npm, Microsoft's
//! emulator of the Blob API), its container created and listed with Azure's
//! own JavaScript SDK: the head is flushed to the container on shutdown and
//! read back from there after the local WAL is gone. (GCS has no emulator
//! installable here that serves the XML API object_store's GCS client
//! lists with: `gcp-storage-emulator` answers 501 to it, and
//! fake-gcs-server ships only as Go source and a container image.)

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Strata, free_port, now_ms, series};

/// Azurite's well-known development account.
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

struct Emulator(Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn clients_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients")
}

async fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "{what} did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Pushes a minute of samples, stops Strata (flushing the head to the
/// bucket), removes the WAL, restarts and reads the series back.
async fn round_trip(dir: &Path, args: &[String], metric: &str) {
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.push("-blocks-storage.tsdb.flush-blocks-on-shutdown=true");
    let mut s = Strata::start(dir, &args).await;
    let t = now_ms() - 60_000;
    let samples: Vec<(i64, f64)> = (0..60).map(|i| (t + i * 1000, i as f64 / 4.0)).collect();
    let (st, body) = s
        .push(
            vec![series(&[("__name__", metric), ("job", "x")], &samples)],
            None,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert!(s.terminate().success(), "clean shutdown; log:\n{}", s.log());
    std::fs::remove_dir_all(dir.join("tsdb")).expect("remove the WAL");
    s.restart().await;
    let got = s.raw_samples(metric, "5m", t + 59_000).await;
    assert_eq!(
        got.len(),
        1,
        "series read back from the bucket; log:\n{}",
        s.log()
    );
    assert_eq!(got[0].1, samples);
}

#[tokio::test]
async fn blocks_round_trip_through_azure_blob_storage() {
    let port = free_port();
    let data = tempfile::tempdir().expect("tempdir");
    let bin = clients_dir().join("node_modules/.bin");
    let _azurite = Emulator(
        Command::new(bin.join("azurite-blob"))
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--location",
                data.path().to_str().expect("path"),
                "--silent",
                "--skipApiVersionCheck",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("azurite (npm, tests/clients) must be installed; the README test command installs it"),
    );
    wait_listening(port, "azurite").await;
    let endpoint = format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}");
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
    );
    let script = r#"
const { BlobServiceClient } = require('@azure/storage-blob');
const service = BlobServiceClient.fromConnectionString(process.env.CONN);
const op = process.argv[1];
(async () => {
  const container = service.getContainerClient('strata-blocks');
  if (op === 'create') { await container.create(); return; }
  for await (const b of container.listBlobsFlat({ prefix: 'anonymous/metrics/' })) console.log(b.name);
})().catch(e => { console.error(e.message); process.exit(1); });
"#;
    let node = |op: &str| {
        let out = Command::new("node")
            .args(["-e", script, op])
            .env("CONN", &connection)
            .current_dir(clients_dir())
            .output()
            .expect("node");
        assert!(
            out.status.success(),
            "azure sdk {op}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    node("create");
    let dir = tempfile::tempdir().expect("tempdir");
    round_trip(
        dir.path(),
        &[
            "-blocks-storage.backend=azure".into(),
            format!("-blocks-storage.azure.account-name={AZURITE_ACCOUNT}"),
            format!("-blocks-storage.azure.account-key={AZURITE_KEY}"),
            "-blocks-storage.azure.container-name=strata-blocks".into(),
            format!("-blocks-storage.azure.endpoint={endpoint}"),
        ],
        "azure_metric",
    )
    .await;
    let listing = node("list");
    for file in ["meta.json", "series.parquet", "chunks.parquet"] {
        assert!(listing.contains(file), "{file} in Azure: {listing}");
    }
}
