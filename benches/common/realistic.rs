//! A Kubernetes cluster's scrape data, modelled on what the exporters really
//! send, for the storage benchmarks' "realistic" mix: per node a
//! node_exporter target (CPU counters in 1/100 s, memory and filesystem
//! gauges in pages, disk and network counters of busy and idle devices,
//! collector durations, Go and process metrics), the node's share of
//! kube-state-metrics (pod and container state, nearly all constant), and
//! application pods exposing request counters, latency histograms and their
//! own Go runtime metrics.
//!
//! Like Prometheus, all series of one target share the scrape timestamp,
//! which sits on the target's own offset within the interval: Prometheus
//! (since 2.32, `--scrape.timestamp-tolerance=2ms`) snaps a scrape started
//! within 2 ms of its schedule to it, so most timestamps are exact and a few
//! (3% here) are late by 3-22 ms.

use strata_model::{Labels, Sample};

use super::Rng;

/// How one series' value moves from scrape to scrape.
#[derive(Clone, Copy)]
enum Kind {
    /// Never changes (info metrics, limits, sizes, state flags).
    Const(f64),
    /// A counter of events (requests, packets, I/Os): with probability
    /// `busy` a scrape adds a count of mean `mean`, spread as real traffic
    /// is, twice as widely as a Poisson count (standard deviation
    /// 2 * sqrt(mean)).
    Counter { mean: f64, busy: f64 },
    /// A counter of bytes: with probability `busy` a scrape adds about
    /// `mean`, with a standard deviation of 30% of it (sizes vary).
    Bytes { mean: f64, busy: f64 },
    /// A counter exported in hundredths (CPU seconds in USER_HZ).
    Centis { per_scrape: f64 },
    /// An integer gauge moving by multiples of `step` with probability `p`.
    Walk { step: f64, p: f64 },
    /// A gauge with two decimals (load averages).
    Load,
    /// A counter exported in thousandths (disk times, from milliseconds).
    Millis { per_scrape: f64 },
    /// A float counter (sums of measured durations, clocks): with
    /// probability `busy` a scrape adds a full-precision amount near `mean`.
    Accumulate { mean: f64, busy: f64 },
    /// A measured duration, as Go clients export one: a whole number of
    /// nanoseconds divided by 1e9, new with probability `p` (collector
    /// durations every scrape, GC pause quantiles only after a GC).
    Duration { mean_ns: f64, p: f64 },
    /// A total of durations in whole nanoseconds, in seconds (Go's
    /// `PauseTotal.Seconds()`): with probability `busy` it grows.
    NanoCounter { mean_ns: f64, busy: f64 },
    /// A small integer gauge (goroutines, open fds) wandering by one.
    Small { p: f64 },
}

struct Series {
    labels: Labels,
    kind: Kind,
    value: f64,
}

/// One scrape target: its series and its scrape offset.
struct Target {
    offset_ms: i64,
    series: Vec<Series>,
    /// Histograms: (first series index, bucket count, requests per scrape).
    histograms: Vec<(usize, usize, f64)>,
}

fn labels(name: &str, common: &[(&str, &str)], extra: &[(&str, &str)]) -> Labels {
    let mut pairs: Vec<(&str, &str)> = vec![("__name__", name)];
    pairs.extend_from_slice(common);
    pairs.extend_from_slice(extra);
    Labels::from_pairs(pairs)
}

fn push(
    t: &mut Target,
    name: &str,
    common: &[(&str, &str)],
    extra: &[(&str, &str)],
    kind: Kind,
    value: f64,
) {
    t.series.push(Series {
        labels: labels(name, common, extra),
        kind,
        value,
    });
}

/// Go runtime and process metrics, as every Go exporter and service has.
fn go_runtime(t: &mut Target, common: &[(&str, &str)], rng: &mut Rng) {
    for q in ["0", "0.25", "0.5", "0.75", "1"] {
        push(
            t,
            "go_gc_duration_seconds",
            common,
            &[("quantile", q)],
            Kind::Duration {
                mean_ns: 2e5,
                p: 0.3,
            },
            1e-4,
        );
    }
    push(
        t,
        "go_gc_duration_seconds_sum",
        common,
        &[],
        Kind::NanoCounter {
            mean_ns: 3e5,
            busy: 0.3,
        },
        10.0,
    );
    push(
        t,
        "go_gc_duration_seconds_count",
        common,
        &[],
        Kind::Counter {
            mean: 1.0,
            busy: 0.3,
        },
        5000.0,
    );
    push(
        t,
        "go_goroutines",
        common,
        &[],
        Kind::Small { p: 0.2 },
        40.0,
    );
    push(t, "go_threads", common, &[], Kind::Const(14.0), 14.0);
    push(
        t,
        "go_info",
        common,
        &[("version", "go1.22.5")],
        Kind::Const(1.0),
        1.0,
    );
    for (name, step) in [
        ("go_memstats_alloc_bytes", 8.0),
        ("go_memstats_heap_alloc_bytes", 8.0),
        ("go_memstats_heap_inuse_bytes", 8192.0),
        ("go_memstats_heap_idle_bytes", 8192.0),
        ("go_memstats_stack_inuse_bytes", 32768.0),
        ("go_memstats_sys_bytes", 65536.0),
        ("process_resident_memory_bytes", 4096.0),
    ] {
        let v = (rng.next() % 4000 + 2000) as f64 * 8192.0;
        push(t, name, common, &[], Kind::Walk { step, p: 0.9 }, v);
    }
    push(
        t,
        "go_memstats_alloc_bytes_total",
        common,
        &[],
        Kind::Bytes {
            mean: 4.0e6,
            busy: 1.0,
        },
        1e10,
    );
    push(
        t,
        "go_memstats_mallocs_total",
        common,
        &[],
        Kind::Counter {
            mean: 30_000.0,
            busy: 1.0,
        },
        1e8,
    );
    push(
        t,
        "go_memstats_frees_total",
        common,
        &[],
        Kind::Counter {
            mean: 29_000.0,
            busy: 1.0,
        },
        1e8,
    );
    push(
        t,
        "go_memstats_last_gc_time_seconds",
        common,
        &[],
        Kind::Accumulate {
            mean: 50.0,
            busy: 0.3,
        },
        1.7e9,
    );
    push(
        t,
        "process_cpu_seconds_total",
        common,
        &[],
        Kind::Centis { per_scrape: 0.2 },
        3000.0,
    );
    push(
        t,
        "process_open_fds",
        common,
        &[],
        Kind::Small { p: 0.05 },
        12.0,
    );
    push(
        t,
        "process_max_fds",
        common,
        &[],
        Kind::Const(1_048_576.0),
        1_048_576.0,
    );
    push(
        t,
        "process_start_time_seconds",
        common,
        &[],
        Kind::Const(1.699e9),
        1.699e9,
    );
    push(
        t,
        "process_virtual_memory_bytes",
        common,
        &[],
        Kind::Walk {
            step: 65536.0,
            p: 0.02,
        },
        2.4e9,
    );
}

fn node_exporter(node: usize, rng: &mut Rng) -> Target {
    let instance = format!("10.0.{node}.10:9100");
    let common = [("job", "node-exporter"), ("instance", instance.as_str())];
    let mut t = Target {
        offset_ms: (rng.next() % 15_000) as i64,
        series: Vec::new(),
        histograms: Vec::new(),
    };
    for cpu in 0..8 {
        let cpu = cpu.to_string();
        for (mode, share) in [
            ("idle", 0.80),
            ("iowait", 0.01),
            ("irq", 0.0),
            ("nice", 0.0),
            ("softirq", 0.005),
            ("steal", 0.0),
            ("system", 0.04),
            ("user", 0.14),
        ] {
            let kind = if share == 0.0 {
                Kind::Const(0.0)
            } else {
                Kind::Centis {
                    per_scrape: 15.0 * share,
                }
            };
            push(
                &mut t,
                "node_cpu_seconds_total",
                &common,
                &[("cpu", &cpu), ("mode", mode)],
                kind,
                1e5 * share,
            );
        }
    }
    for (i, field) in [
        "Active",
        "Active_anon",
        "Active_file",
        "AnonHugePages",
        "AnonPages",
        "Bounce",
        "Buffers",
        "Cached",
        "CommitLimit",
        "Committed_AS",
        "DirectMap1G",
        "DirectMap2M",
        "DirectMap4k",
        "Dirty",
        "HugePages_Free",
        "HugePages_Rsvd",
        "HugePages_Surp",
        "HugePages_Total",
        "Hugepagesize",
        "Inactive",
        "Inactive_anon",
        "Inactive_file",
        "KernelStack",
        "Mapped",
        "MemAvailable",
        "MemFree",
        "MemTotal",
        "Mlocked",
        "NFS_Unstable",
        "PageTables",
        "SReclaimable",
        "SUnreclaim",
        "Shmem",
        "ShmemHugePages",
        "ShmemPmdMapped",
        "Slab",
        "SwapCached",
        "SwapFree",
        "SwapTotal",
        "Unevictable",
        "VmallocChunk",
        "VmallocTotal",
        "VmallocUsed",
        "Writeback",
        "WritebackTmp",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("node_memory_{field}_bytes");
        let v = (rng.next() % 4_000_000) as f64 * 4096.0;
        // About half of the fields move at all; the busy ones by pages.
        let kind = if i % 2 == 0 {
            Kind::Walk {
                step: 4096.0,
                p: 0.7,
            }
        } else {
            Kind::Const(v)
        };
        push(&mut t, &name, &common, &[], kind, v);
    }
    for mount in [
        "/",
        "/boot",
        "/var/lib/kubelet",
        "/var/lib/containerd",
        "/run",
        "/tmp",
    ] {
        let extra = [
            ("mountpoint", mount),
            ("fstype", "ext4"),
            ("device", "/dev/nvme0n1p1"),
        ];
        let size = (rng.next() % 100_000 + 10_000) as f64 * 1_048_576.0;
        push(
            &mut t,
            "node_filesystem_size_bytes",
            &common,
            &extra,
            Kind::Const(size),
            size,
        );
        for name in ["node_filesystem_avail_bytes", "node_filesystem_free_bytes"] {
            push(
                &mut t,
                name,
                &common,
                &extra,
                Kind::Walk {
                    step: 4096.0,
                    p: 0.3,
                },
                size / 2.0,
            );
        }
        push(
            &mut t,
            "node_filesystem_files",
            &common,
            &extra,
            Kind::Const(6_553_600.0),
            6_553_600.0,
        );
        push(
            &mut t,
            "node_filesystem_files_free",
            &common,
            &extra,
            Kind::Walk { step: 1.0, p: 0.3 },
            6e6,
        );
        push(
            &mut t,
            "node_filesystem_readonly",
            &common,
            &extra,
            Kind::Const(0.0),
            0.0,
        );
        push(
            &mut t,
            "node_filesystem_device_error",
            &common,
            &extra,
            Kind::Const(0.0),
            0.0,
        );
    }
    for (dev, busy) in [("nvme0n1", 1.0), ("nvme1n1", 0.05), ("dm-0", 0.0)] {
        let extra = [("device", dev)];
        for (name, mean) in [
            ("node_disk_reads_completed_total", 20.0),
            ("node_disk_writes_completed_total", 300.0),
            ("node_disk_read_bytes_total", 80_000.0),
            ("node_disk_written_bytes_total", 4_000_000.0),
            ("node_disk_reads_merged_total", 2.0),
            ("node_disk_writes_merged_total", 100.0),
            ("node_disk_discards_completed_total", 0.5),
        ] {
            let kind = if busy == 0.0 {
                Kind::Const(1000.0)
            } else if name.ends_with("_bytes_total") {
                Kind::Bytes { mean, busy }
            } else {
                Kind::Counter { mean, busy }
            };
            push(&mut t, name, &common, &extra, kind, 1e6);
        }
        for (name, per_scrape) in [
            ("node_disk_io_time_seconds_total", 0.4),
            ("node_disk_read_time_seconds_total", 0.01),
            ("node_disk_write_time_seconds_total", 0.6),
            ("node_disk_io_time_weighted_seconds_total", 0.7),
        ] {
            // Milliseconds in /proc/diskstats: three decimals.
            let kind = if busy == 0.0 {
                Kind::Const(3.5)
            } else {
                Kind::Millis { per_scrape }
            };
            push(&mut t, name, &common, &extra, kind, 1000.0);
        }
        push(
            &mut t,
            "node_disk_io_now",
            &common,
            &extra,
            Kind::Small { p: 0.1 * busy },
            0.0,
        );
        push(
            &mut t,
            "node_disk_info",
            &common,
            &[("device", dev), ("major", "259")],
            Kind::Const(1.0),
            1.0,
        );
    }
    let mut interfaces = vec![
        ("eth0".to_string(), 2_000_000.0),
        ("lo".to_string(), 50_000.0),
    ];
    for v in 0..10 {
        interfaces.push((
            format!("veth{:08x}", rng.next() as u32),
            20_000.0 * (v % 3) as f64,
        ));
    }
    for (dev, rate) in &interfaces {
        let extra = [("device", dev.as_str())];
        for dir in ["receive", "transmit"] {
            let bytes = if *rate == 0.0 {
                Kind::Const(0.0)
            } else {
                Kind::Bytes {
                    mean: *rate,
                    busy: 1.0,
                }
            };
            let packets = if *rate == 0.0 {
                Kind::Const(0.0)
            } else {
                Kind::Counter {
                    mean: rate / 900.0,
                    busy: 1.0,
                }
            };
            push(
                &mut t,
                &format!("node_network_{dir}_bytes_total"),
                &common,
                &extra,
                bytes,
                1e9,
            );
            push(
                &mut t,
                &format!("node_network_{dir}_packets_total"),
                &common,
                &extra,
                packets,
                1e6,
            );
            for what in ["errs", "drop", "fifo", "frame", "compressed", "multicast"] {
                push(
                    &mut t,
                    &format!("node_network_{dir}_{what}_total"),
                    &common,
                    &extra,
                    Kind::Const(0.0),
                    0.0,
                );
            }
        }
        push(
            &mut t,
            "node_network_up",
            &common,
            &extra,
            Kind::Const(1.0),
            1.0,
        );
        push(
            &mut t,
            "node_network_mtu_bytes",
            &common,
            &extra,
            Kind::Const(1500.0),
            1500.0,
        );
        push(
            &mut t,
            "node_network_speed_bytes",
            &common,
            &extra,
            Kind::Const(1.25e9),
            1.25e9,
        );
    }
    for name in ["node_load1", "node_load5", "node_load15"] {
        push(&mut t, name, &common, &[], Kind::Load, 1.5);
    }
    for (name, mean) in [
        ("node_context_switches_total", 150_000.0),
        ("node_intr_total", 90_000.0),
        ("node_forks_total", 300.0),
    ] {
        push(
            &mut t,
            name,
            &common,
            &[],
            Kind::Counter { mean, busy: 1.0 },
            1e9,
        );
    }
    push(
        &mut t,
        "node_procs_running",
        &common,
        &[],
        Kind::Small { p: 0.5 },
        3.0,
    );
    push(
        &mut t,
        "node_procs_blocked",
        &common,
        &[],
        Kind::Small { p: 0.1 },
        0.0,
    );
    push(
        &mut t,
        "node_boot_time_seconds",
        &common,
        &[],
        Kind::Const(1.69e9),
        1.69e9,
    );
    push(
        &mut t,
        "node_uname_info",
        &common,
        &[("release", "6.1.0-18-amd64"), ("machine", "x86_64")],
        Kind::Const(1.0),
        1.0,
    );
    for c in [
        "arp",
        "bcache",
        "bonding",
        "btrfs",
        "conntrack",
        "cpu",
        "cpufreq",
        "diskstats",
        "dmi",
        "edac",
        "entropy",
        "fibrechannel",
        "filefd",
        "filesystem",
        "hwmon",
        "infiniband",
        "ipvs",
        "loadavg",
        "mdadm",
        "meminfo",
        "netclass",
        "netdev",
        "netstat",
        "nfs",
        "nfsd",
        "nvme",
        "os",
        "powersupplyclass",
        "pressure",
        "rapl",
        "schedstat",
        "selinux",
        "sockstat",
        "softnet",
        "stat",
        "tapestats",
        "textfile",
        "thermal_zone",
        "time",
        "timex",
        "udp_queues",
        "uname",
        "vmstat",
        "xfs",
        "zfs",
    ] {
        // Collectors take from microseconds to tens of milliseconds.
        let mean_ns = 10f64.powf(4.0 + 3.0 * rng.unit());
        push(
            &mut t,
            "node_scrape_collector_duration_seconds",
            &common,
            &[("collector", c)],
            Kind::Duration { mean_ns, p: 1.0 },
            1e-3,
        );
        push(
            &mut t,
            "node_scrape_collector_success",
            &common,
            &[("collector", c)],
            Kind::Const(1.0),
            1.0,
        );
    }
    go_runtime(&mut t, &common, rng);
    t
}

/// The node's share of kube-state-metrics' one big target.
fn kube_state_metrics(node: usize, pods: usize, ksm: &mut Target) {
    let common = [("job", "kube-state-metrics"), ("instance", "10.0.0.5:8080")];
    let node_name = format!("node-{node}");
    push(
        ksm,
        "kube_node_info",
        &common,
        &[("node", &node_name), ("kernel_version", "6.1.0")],
        Kind::Const(1.0),
        1.0,
    );
    for r in ["cpu", "memory", "pods", "ephemeral_storage"] {
        push(
            ksm,
            "kube_node_status_allocatable",
            &common,
            &[("node", &node_name), ("resource", r)],
            Kind::Const(8.0),
            8.0,
        );
        push(
            ksm,
            "kube_node_status_capacity",
            &common,
            &[("node", &node_name), ("resource", r)],
            Kind::Const(8.0),
            8.0,
        );
    }
    for p in 0..pods {
        let pod = format!("svc-{}-7d9f8c{:04}-x{node}{p}", p % 7, p);
        let ns = ["default", "kafka", "spark", "monitoring"][p % 4];
        let at = [("namespace", ns), ("pod", pod.as_str())];
        let ctr = [
            ("namespace", ns),
            ("pod", pod.as_str()),
            ("container", "main"),
        ];
        push(
            ksm,
            "kube_pod_info",
            &common,
            &[("namespace", ns), ("pod", &pod), ("node", &node_name)],
            Kind::Const(1.0),
            1.0,
        );
        for phase in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
            let v = if phase == "Running" { 1.0 } else { 0.0 };
            let mut l = at.to_vec();
            l.push(("phase", phase));
            push(ksm, "kube_pod_status_phase", &common, &l, Kind::Const(v), v);
        }
        for cond in ["true", "false", "unknown"] {
            let v = if cond == "true" { 1.0 } else { 0.0 };
            let mut l = at.to_vec();
            l.push(("condition", cond));
            push(ksm, "kube_pod_status_ready", &common, &l, Kind::Const(v), v);
        }
        push(ksm, "kube_pod_owner", &common, &at, Kind::Const(1.0), 1.0);
        push(
            ksm,
            "kube_pod_created",
            &common,
            &at,
            Kind::Const(1.7e9),
            1.7e9,
        );
        push(
            ksm,
            "kube_pod_start_time",
            &common,
            &at,
            Kind::Const(1.7e9),
            1.7e9,
        );
        push(
            ksm,
            "kube_pod_container_info",
            &common,
            &ctr,
            Kind::Const(1.0),
            1.0,
        );
        push(
            ksm,
            "kube_pod_container_status_ready",
            &common,
            &ctr,
            Kind::Const(1.0),
            1.0,
        );
        push(
            ksm,
            "kube_pod_container_status_running",
            &common,
            &ctr,
            Kind::Const(1.0),
            1.0,
        );
        push(
            ksm,
            "kube_pod_container_status_waiting",
            &common,
            &ctr,
            Kind::Const(0.0),
            0.0,
        );
        push(
            ksm,
            "kube_pod_container_status_terminated",
            &common,
            &ctr,
            Kind::Const(0.0),
            0.0,
        );
        push(
            ksm,
            "kube_pod_container_status_restarts_total",
            &common,
            &ctr,
            Kind::Counter {
                mean: 1.0,
                busy: 0.0002,
            },
            0.0,
        );
        for (r, unit, v) in [("cpu", "core", 0.5), ("memory", "byte", 536_870_912.0)] {
            let mut l = ctr.to_vec();
            l.extend([("resource", r), ("unit", unit)]);
            push(
                ksm,
                "kube_pod_container_resource_requests",
                &common,
                &l,
                Kind::Const(v),
                v,
            );
            push(
                ksm,
                "kube_pod_container_resource_limits",
                &common,
                &l,
                Kind::Const(v * 2.0),
                v * 2.0,
            );
        }
    }
}

/// An application pod: request counters, two latency histograms, Go runtime.
fn app_pod(node: usize, p: usize, rng: &mut Rng) -> Target {
    let instance = format!("10.1.{node}.{p}:8080");
    let pod = format!("checkout-5f6d7c{p:04}-n{node}");
    let common = [
        ("job", "checkout"),
        ("instance", instance.as_str()),
        ("namespace", "default"),
        ("pod", pod.as_str()),
    ];
    let mut t = Target {
        offset_ms: (rng.next() % 15_000) as i64,
        series: Vec::new(),
        histograms: Vec::new(),
    };
    // Requests per scrape: one busy handler (40/s), a quieter one, and the
    // kubelet's probe every 10 s.
    for (handler, per_scrape) in [
        ("/api/cart", 600.0),
        ("/api/checkout", 30.0),
        ("/healthz", 1.5),
    ] {
        for (code, share) in [("200", 0.97), ("404", 0.02), ("500", 0.01)] {
            let extra = [("handler", handler), ("method", "POST"), ("code", code)];
            let mean: f64 = per_scrape * share;
            let kind = Kind::Counter {
                mean: mean.max(1.0),
                busy: mean.min(1.0),
            };
            push(&mut t, "http_requests_total", &common, &extra, kind, 1e6);
        }
        let first = t.series.len();
        for le in [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
        ] {
            push(
                &mut t,
                "http_request_duration_seconds_bucket",
                &common,
                &[("handler", handler), ("le", le)],
                Kind::Const(0.0),
                0.0,
            );
        }
        push(
            &mut t,
            "http_request_duration_seconds_sum",
            &common,
            &[("handler", handler)],
            Kind::Const(0.0),
            0.0,
        );
        push(
            &mut t,
            "http_request_duration_seconds_count",
            &common,
            &[("handler", handler)],
            Kind::Const(0.0),
            0.0,
        );
        t.histograms.push((first, 12, per_scrape));
    }
    go_runtime(&mut t, &common, rng);
    t
}

/// Share of requests at or under each bucket bound of [`app_pod`]'s
/// histograms (cumulative; the last is +Inf).
const LATENCY_CDF: [f64; 12] = [
    0.02, 0.08, 0.30, 0.62, 0.86, 0.96, 0.985, 0.995, 0.999, 0.9997, 0.9999, 1.0,
];

/// `nodes` nodes' worth of series: each node has a node_exporter,
/// `20` pods in kube-state-metrics and `10` application pods. `samples`
/// scrapes per series every `interval_ms`, the first in `[start,
/// start + interval_ms)`.
pub fn generate_cluster(
    nodes: usize,
    start: i64,
    samples: usize,
    interval_ms: i64,
) -> Vec<(Labels, Vec<Sample>)> {
    let mut rng = Rng(0x5EED_CAFE_F00D_1234);
    let mut targets = Vec::new();
    let mut ksm = Target {
        offset_ms: (rng.next() % 15_000) as i64,
        series: Vec::new(),
        histograms: Vec::new(),
    };
    for node in 0..nodes {
        targets.push(node_exporter(node, &mut rng));
        kube_state_metrics(node, 20, &mut ksm);
        for p in 0..10 {
            targets.push(app_pod(node, p, &mut rng));
        }
    }
    targets.push(ksm);

    let mut out = Vec::new();
    for mut target in targets {
        let times: Vec<i64> = (0..samples as i64)
            .map(|k| {
                let late = if rng.next() % 100 < 3 {
                    3 + (rng.next() % 20) as i64
                } else {
                    0
                };
                start + target.offset_ms % (interval_ms - 50) + k * interval_ms + late
            })
            .collect();
        let mut values: Vec<Vec<Sample>> = vec![Vec::with_capacity(samples); target.series.len()];
        let histogram_series: Vec<bool> = {
            let mut h = vec![false; target.series.len()];
            for &(first, buckets, _) in &target.histograms {
                h[first..first + buckets + 2]
                    .iter_mut()
                    .for_each(|x| *x = true);
            }
            h
        };
        for &t in &times {
            for (i, s) in target.series.iter_mut().enumerate() {
                if histogram_series[i] {
                    continue;
                }
                s.value = step(s.kind, s.value, &mut rng);
                values[i].push(Sample { t, v: s.value });
            }
            for &(first, buckets, rate) in &target.histograms {
                let n = (rate + 2.0 * rate.sqrt() * rng.normal()).round().max(0.0);
                let mut sum = 0.0;
                let mut below = 0.0;
                for (b, cdf) in LATENCY_CDF.iter().enumerate().take(buckets) {
                    // Each request lands in a bucket independently: binomial
                    // counts, approximated by a normal around n * cdf.
                    let spread = (n * cdf * (1.0 - cdf)).sqrt();
                    let noisy = if b + 1 == buckets {
                        n
                    } else {
                        (n * cdf + spread * rng.normal()).round().clamp(0.0, n)
                    };
                    let cumulative = noisy.max(below);
                    sum +=
                        (cumulative - below) * 0.004 * (1 << b.min(10)) as f64 * (0.5 + rng.unit());
                    below = cumulative;
                    target.series[first + b].value += cumulative;
                }
                target.series[first + buckets].value += sum;
                target.series[first + buckets + 1].value += n;
                let range = first..first + buckets + 2;
                for (out, s) in values[range.clone()].iter_mut().zip(&target.series[range]) {
                    out.push(Sample { t, v: s.value });
                }
            }
        }
        for (s, v) in target.series.into_iter().zip(values) {
            out.push((s.labels, v));
        }
    }
    out
}

fn step(kind: Kind, v: f64, rng: &mut Rng) -> f64 {
    match kind {
        Kind::Const(c) => c,
        Kind::Counter { mean, busy } => {
            if rng.unit() < busy {
                v + (mean + 2.0 * mean.sqrt() * rng.normal()).round().max(0.0)
            } else {
                v
            }
        }
        Kind::Bytes { mean, busy } => {
            if rng.unit() < busy {
                v + (mean * (1.0 + 0.3 * rng.normal())).round().max(0.0)
            } else {
                v
            }
        }
        Kind::Centis { per_scrape } => {
            let centis =
                (v * 100.0).round() + (per_scrape * 100.0 * (0.8 + 0.4 * rng.unit())).round();
            centis / 100.0
        }
        Kind::Walk { step, p } => {
            if rng.unit() < p {
                let k = (rng.next() % 64) as f64 - 32.0;
                (v + k * step).max(0.0)
            } else {
                v
            }
        }
        Kind::Load => {
            let centis = ((v + 0.1 * (rng.unit() - 0.5)).abs() * 100.0).round();
            centis / 100.0
        }
        Kind::Millis { per_scrape } => {
            let millis = (v * 1000.0).round() + (per_scrape * 1000.0 * (0.5 + rng.unit())).round();
            millis / 1000.0
        }
        Kind::Accumulate { mean, busy } => {
            if rng.unit() < busy {
                v + mean * (0.5 + rng.unit())
            } else {
                v
            }
        }
        Kind::Duration { mean_ns, p } => {
            if rng.unit() < p {
                (mean_ns * (0.5 + rng.unit())).round() / 1e9
            } else {
                v
            }
        }
        Kind::NanoCounter { mean_ns, busy } => {
            if rng.unit() < busy {
                ((v * 1e9).round() + (mean_ns * (0.5 + rng.unit())).round()) / 1e9
            } else {
                v
            }
        }
        Kind::Small { p } => {
            if rng.unit() < p {
                (v + if rng.next().is_multiple_of(2) {
                    1.0
                } else {
                    -1.0
                })
                .max(0.0)
            } else {
                v
            }
        }
    }
}
