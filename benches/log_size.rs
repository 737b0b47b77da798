//! Log storage benchmark: bytes of Strata's log blocks against `gzip -6` of
//! the same lines, on a cluster's realistic logs (JSON access logs, logfmt
//! application logs, Java logs with stack traces; see
//! `common/realistic_logs.rs`), per format and mixed, and how fast a line
//! filter scans the stored lines on one core (decompression, decoding and
//! the `LIKE '%error%'` kernel the querier runs in the Parquet scan).
//!
//! `cargo bench -p strata-storage --bench log_size` runs the full size
//! (20 streams of each format over 2 hours, about 100 MB of lines). Under
//! `cargo test` it runs a small smoke size. gzip runs over the lines in
//! the block's order (by stream, then time), newline-separated, which is
//! the order most favourable to it; an entry's structured metadata is
//! appended to its line as ` name=value` pairs for gzip and counted in the
//! raw bytes.
//!
//! For profiling: `LOG_SIZE_SCAN=1` builds only the mixed block and runs
//! the scans; `DECODE_ONLY=1` makes the scans decode the columns without
//! searching them.

use std::io::Write as _;
use std::time::Instant;

use bytes::Bytes;
use datafusion::arrow::array::{Array, Scalar, StringArray, StringViewArray};
use datafusion::arrow::compute::kernels::comparison::contains;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use datafusion::parquet::arrow::{ArrowWriter, ProjectionMask};
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use strata_model::Labels;
use strata_model::logs::LogEntry;
use strata_storage::logblock::{encode_log_block, line_column, line_source_columns};

#[path = "common/mod.rs"]
mod common;
use common::realistic_logs::{LogFormat, civil, generate_logs};

/// 2026-12-07T08:00:00Z.
const START_NS: i64 = 1_796_630_400_000_000_000;

struct Measured {
    /// The lines in block order.
    text: Vec<String>,
    lines: usize,
    raw: usize,
    gzip: usize,
    strata: usize,
    entries_parquet: Bytes,
    encode_s: f64,
}

fn measure(streams: &mut [(Labels, Vec<LogEntry>)], seconds: i64) -> Measured {
    streams.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut lines, mut raw) = (0, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    for (_, entries) in streams.iter() {
        for e in entries {
            lines += 1;
            raw += e.line.len() + 1;
            raw += e
                .metadata
                .iter()
                .map(|m| m.name.len() + m.value.len() + 2)
                .sum::<usize>();
            gz.write_all(e.line.as_bytes()).expect("gzip");
            // Structured metadata as a flat file would keep it.
            for m in &e.metadata {
                write!(gz, " {}={}", m.name, m.value).expect("gzip");
            }
            gz.write_all(b"\n").expect("gzip");
        }
    }
    let gzip = gz.finish().expect("gzip").len();
    let started = Instant::now();
    let block = encode_log_block(
        streams,
        START_NS / 1_000_000,
        (START_NS + seconds * 1_000_000_000) / 1_000_000,
    )
    .expect("encode log block");
    let encode_s = started.elapsed().as_secs_f64();
    let text = streams
        .iter()
        .flat_map(|(_, entries)| entries.iter().map(|e| e.line.clone()))
        .collect();
    Measured {
        text,
        lines,
        raw,
        gzip,
        strata: block.streams_parquet.len() + block.entries_parquet.len(),
        entries_parquet: Bytes::from(block.entries_parquet),
        encode_s,
    }
}

/// Counts the lines of `entries.parquet` that contain `needle`, on this
/// thread: (matches, seconds). With `join`, lines are put back together
/// from templates and variables first (what regular expressions and
/// substrings with other characters than letters and digits need);
/// otherwise the substring is searched in the template and in each
/// variable column, as the querier does for letters and digits.
fn scan(entries: &Bytes, needle: &str, join: bool) -> (usize, f64) {
    let started = Instant::now();
    // Strings as views, as DataFusion reads them (its default
    // `schema_force_view_types`): dictionary values are not copied per row.
    let plain = ParquetRecordBatchReaderBuilder::try_new(entries.clone()).expect("entries.parquet");
    let views: Vec<Field> = plain
        .schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => Field::new(f.name(), DataType::Utf8View, f.is_nullable()),
            _ => f.as_ref().clone(),
        })
        .collect();
    let options = ArrowReaderOptions::new().with_schema(std::sync::Arc::new(Schema::new(views)));
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(entries.clone(), options)
        .expect("entries.parquet");
    // A file of whole lines (the layout before templates) has a `line` column.
    let names = if builder.schema().field_with_name("line").is_ok() {
        vec!["line".to_string()]
    } else {
        line_source_columns()
    };
    let mask = ProjectionMask::columns(builder.parquet_schema(), names.iter().map(String::as_str));
    let reader = builder
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .expect("reader");
    let mut matches = 0;
    let has = |column: &dyn Array| {
        if let Some(view) = column.as_any().downcast_ref::<StringViewArray>() {
            contains(view, &Scalar::new(StringViewArray::from(vec![needle])))
        } else {
            contains(&column, &Scalar::new(StringArray::from(vec![needle])))
        }
        .expect("contains")
    };
    let decode_only = std::env::var_os("DECODE_ONLY").is_some();
    for batch in reader {
        let batch = batch.expect("batch");
        if decode_only {
            matches += batch.num_rows();
            continue;
        }
        if join {
            let lines = line_column(&batch).expect("lines");
            matches += has(&lines).true_count();
            continue;
        }
        // Columns in `line_source_columns` order: ts, tpl, the variables.
        let mut hit = has(batch.column(1));
        for column in &batch.columns()[2..] {
            let more = has(column);
            hit = datafusion::arrow::compute::kernels::boolean::or_kleene(&hit, &more).expect("or");
        }
        matches += hit.true_count();
    }
    (matches, started.elapsed().as_secs_f64())
}

/// The median seconds of `runs` scans of `entries` for "error", each
/// checked to find the `expected` lines (unless only decoding).
fn p50_scan(entries: &Bytes, join: bool, runs: usize, expected: usize) -> f64 {
    let mut times = Vec::new();
    for _ in 0..runs {
        let (n, s) = scan(entries, "error", join);
        if std::env::var_os("DECODE_ONLY").is_none() {
            assert_eq!(n, expected, "lines with \"error\" (joined first: {join})");
        }
        times.push(s);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The lines alone as a one-column Parquet file with zstd at `level` and
/// pages of `page_bytes`: what the line column would cost so.
fn whole_line_column(lines: &[String], level: i32, page_bytes: usize) -> (Vec<u8>, f64) {
    let schema = std::sync::Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, false)]));
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(level).expect("zstd level"),
        ))
        .set_dictionary_enabled(false)
        .set_data_page_size_limit(page_bytes)
        .set_max_row_group_row_count(Some(64 * 1024))
        .build();
    let started = Instant::now();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema.clone(), Some(props)).expect("writer");
    for part in lines.chunks(64 * 1024) {
        let column = StringArray::from_iter_values(part.iter());
        let batch =
            RecordBatch::try_new(schema.clone(), vec![std::sync::Arc::new(column)]).expect("batch");
        w.write(&batch).expect("write");
    }
    w.close().expect("close");
    (out, started.elapsed().as_secs_f64())
}

fn main() {
    // The generator's dates are right (they are in every line).
    assert_eq!(civil(START_NS), (2026, 12, 7, 8, 0, 0, 0));
    let full = std::env::args().any(|a| a == "--bench");
    let (per_format, seconds) = if full { (20, 7_200) } else { (2, 300) };

    println!(
        "{:<34} {:>8} {:>9} {:>12} {:>13} {:>14} {:>10}",
        "logs", "lines", "raw MB", "gzip -6", "Strata", "Strata/gzip", "encode"
    );
    let mut sets: Vec<(&str, Vec<LogFormat>)> = LogFormat::ALL
        .iter()
        .map(|&f| (f.name(), vec![f]))
        .collect();
    sets.push(("all three, mixed", LogFormat::ALL.to_vec()));
    // `LOG_SIZE_SCAN=1`: the mixed set and the filter scans only (to profile them).
    let scan_only = std::env::var_os("LOG_SIZE_SCAN").is_some();
    if scan_only {
        sets.drain(..sets.len() - 1);
    }
    let mut mixed = None;
    for (name, formats) in sets {
        let mut streams = generate_logs(&formats, per_format, START_NS, seconds, 7);
        let m = measure(&mut streams, seconds);
        println!(
            "{name:<34} {:>8} {:>9.1} {:>11.2}x {:>12.2}x {:>13.3}x {:>8.1} MB/s",
            m.lines,
            m.raw as f64 / 1e6,
            m.raw as f64 / m.gzip as f64,
            m.raw as f64 / m.strata as f64,
            m.strata as f64 / m.gzip as f64,
            m.raw as f64 / 1e6 / m.encode_s
        );
        assert!(m.lines > 0 && m.strata > 0);
        mixed = Some(m);
    }
    let Some(m) = mixed else { return };
    // The line column alone, by zstd level and page size, against gzip -6
    // of the same lines.
    let raw_lines: usize = m.text.iter().map(|l| l.len() + 1).sum();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    for l in &m.text {
        gz.write_all(l.as_bytes()).expect("gzip");
        gz.write_all(b"\n").expect("gzip");
    }
    let gzip_lines = gz.finish().expect("gzip").len();
    println!("line column alone (mixed), against gzip -6 of the lines ({gzip_lines} bytes):");
    let levels: &[i32] = match (scan_only, full) {
        (true, _) => &[],
        (false, true) => &[3, 6, 9, 12, 15, 19],
        (false, false) => &[9],
    };
    for &page in &[1usize << 20, 8 << 20] {
        for &level in levels {
            let (file, s) = whole_line_column(&m.text, level, page);
            let bytes = file.len();
            println!(
                "  zstd {level:>2}, {:>2} MiB pages: {:>6.3}x gzip, {:>6.1} MB/s",
                page >> 20,
                bytes as f64 / gzip_lines as f64,
                raw_lines as f64 / 1e6 / s
            );
        }
    }
    let runs = if full { 5 } else { 1 };
    let expected = m.text.iter().filter(|l| l.contains("error")).count();
    // The same lines as whole lines (zstd 9, 8 MiB pages, the layout before
    // templates), scanned the same way.
    let (whole, _) = whole_line_column(&m.text, 9, 8 << 20);
    let whole = Bytes::from(whole);
    let p50 = p50_scan(&whole, true, runs, expected);
    println!(
        "line filter |= \"error\" over the same lines as whole lines, one core: p50 {:.1} ms = {:.2} GB/s of lines",
        p50 * 1e3,
        m.raw as f64 / 1e9 / p50
    );
    for join in [false, true] {
        let p50 = p50_scan(&m.entries_parquet, join, runs, expected);
        println!(
            "line filter |= \"error\" over the mixed block, one core, {}: {expected} lines matched, p50 {:.1} ms = {:.2} GB/s of lines",
            if join {
                "lines put back together"
            } else {
                "template and variable columns"
            },
            p50 * 1e3,
            m.raw as f64 / 1e9 / p50
        );
    }
    assert!(expected > 0, "the realistic logs have errors");
}
