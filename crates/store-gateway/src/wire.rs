//! [`BlockRead`] and [`BlockAnswer`] on the wire: the request a querier
//! sends, the request a gateway decodes (into owned parts the read borrows
//! from), and each block's answer cut into bounded messages and put back
//! together.

use strata_ingester_client::SERIES_PER_MESSAGE;
use strata_ingester_client::wire::{
    filters_from_proto, filters_to_proto, labels_from_proto, matchers_from_proto,
    matchers_to_proto, samples_from_proto, series_to_proto, sizes_from_proto, sizes_to_proto,
    stream_from_proto, stream_to_proto,
};
use strata_model::logs::{Direction, LineFilter, LogStream};
use strata_model::{Matcher, SeriesSamples, StepWindows};
use strata_proto::ingester::{LogSelect, Signal as PSignal};
use strata_proto::storegateway::{BlocksRequest, BlocksResponse};
use strata_storage::BlockMeta;
use tonic::Status;

use crate::{BlockAnswer, BlockRead};

/// The request for `read` of `blocks`.
pub(crate) fn request(tenant: &str, blocks: &[&BlockMeta], read: &BlockRead<'_>) -> BlocksRequest {
    let mut req = BlocksRequest {
        tenant: tenant.to_string(),
        blocks: blocks
            .iter()
            .filter_map(|b| serde_json::to_vec(b).ok())
            .map(bytes::Bytes::from)
            .collect(),
        ..BlocksRequest::default()
    };
    match *read {
        BlockRead::Samples {
            matchers,
            min_t,
            max_t,
            windows,
        } => {
            req.signal = PSignal::Metrics.into();
            req.matchers = matchers_to_proto(matchers);
            (req.start, req.end) = (min_t, max_t);
            if let Some(w) = windows {
                (req.step_windows_step, req.step_windows_width) = (w.step, w.width);
            }
        }
        BlockRead::Series { matchers } => {
            req.signal = PSignal::Metrics.into();
            req.matchers = matchers_to_proto(matchers);
            req.labels_only = true;
        }
        BlockRead::LogEntries {
            matchers,
            filters,
            start_ns,
            end_ns,
            limit,
        } => {
            req.signal = PSignal::Logs.into();
            req.matchers = matchers_to_proto(matchers);
            (req.start, req.end) = (start_ns, end_ns);
            req.logs = Some(LogSelect {
                line_filters: filters_to_proto(filters),
                limit: limit.map_or(0, |(n, _)| n as u64),
                backward: limit.is_some_and(|(_, d)| d == Direction::Backward),
                sizes_only: false,
            });
        }
        BlockRead::LogSizes {
            matchers,
            start_ns,
            end_ns,
        } => {
            req.signal = PSignal::Logs.into();
            req.matchers = matchers_to_proto(matchers);
            (req.start, req.end) = (start_ns, end_ns);
            req.logs = Some(LogSelect {
                sizes_only: true,
                ..LogSelect::default()
            });
        }
        BlockRead::Streams { matchers } => {
            req.signal = PSignal::Logs.into();
            req.matchers = matchers_to_proto(matchers);
            req.labels_only = true;
        }
    }
    req
}

/// A decoded request: what its [`BlockRead`] borrows.
pub(crate) struct DecodedRequest {
    pub tenant: String,
    pub blocks: Vec<BlockMeta>,
    signal: PSignal,
    matchers: Vec<Matcher>,
    filters: Vec<LineFilter>,
    start: i64,
    end: i64,
    labels_only: bool,
    logs: LogSelect,
    windows: Option<StepWindows>,
}

impl DecodedRequest {
    /// Decodes `req`, refusing what no querier sends.
    pub fn decode(req: BlocksRequest) -> Result<Self, Status> {
        let signal = PSignal::try_from(req.signal)
            .map_err(|_| Status::invalid_argument(format!("unknown signal {}", req.signal)))?;
        if req.tenant.is_empty() {
            return Err(Status::invalid_argument("a block read needs a tenant"));
        }
        let blocks = req
            .blocks
            .iter()
            .map(|b| {
                let meta: BlockMeta = serde_json::from_slice(b)
                    .map_err(|e| Status::invalid_argument(format!("bad block meta: {e}")))?;
                // The ULID names the block's directory: nothing else may.
                if meta.ulid.is_empty() || !meta.ulid.bytes().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(Status::invalid_argument(format!(
                        "bad block ULID {:?}",
                        meta.ulid
                    )));
                }
                Ok(meta)
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let logs = req.logs.unwrap_or_default();
        // Windows that make no sense are no windows: every sample is read.
        let windows = (req.step_windows_step > 0)
            .then(|| StepWindows::new(req.end, req.step_windows_step, req.step_windows_width))
            .flatten();
        Ok(Self {
            tenant: req.tenant,
            blocks,
            signal,
            matchers: matchers_from_proto(&req.matchers)?,
            filters: filters_from_proto(&logs.line_filters)?,
            start: req.start,
            end: req.end,
            labels_only: req.labels_only,
            logs,
            windows,
        })
    }

    /// The read the request asks for.
    pub fn read(&self) -> BlockRead<'_> {
        let matchers = &self.matchers;
        match (self.signal, self.labels_only, self.logs.sizes_only) {
            (PSignal::Metrics, true, _) => BlockRead::Series { matchers },
            (PSignal::Metrics, false, _) => BlockRead::Samples {
                matchers,
                min_t: self.start,
                max_t: self.end,
                windows: self.windows,
            },
            (PSignal::Logs, true, _) => BlockRead::Streams { matchers },
            (PSignal::Logs, false, true) => BlockRead::LogSizes {
                matchers,
                start_ns: self.start,
                end_ns: self.end,
            },
            (PSignal::Logs, false, false) => BlockRead::LogEntries {
                matchers,
                filters: &self.filters,
                start_ns: self.start,
                end_ns: self.end,
                limit: (self.logs.limit > 0).then(|| {
                    let dir = if self.logs.backward {
                        Direction::Backward
                    } else {
                        Direction::Forward
                    };
                    (usize::try_from(self.logs.limit).unwrap_or(usize::MAX), dir)
                }),
            },
        }
    }
}

/// `answer` for block `ulid` in messages of at most [`SERIES_PER_MESSAGE`]
/// series or streams, the last one marked done.
pub(crate) fn answer_messages(ulid: &str, answer: &BlockAnswer) -> Vec<BlocksResponse> {
    let msg = |series, streams| BlocksResponse {
        block: ulid.to_string(),
        series,
        streams,
        block_done: false,
    };
    let mut out: Vec<BlocksResponse> = match answer {
        BlockAnswer::Samples(s) => s
            .chunks(SERIES_PER_MESSAGE)
            .map(|c| {
                msg(
                    c.iter()
                        .map(|s| series_to_proto(&s.labels, &s.samples))
                        .collect(),
                    Vec::new(),
                )
            })
            .collect(),
        BlockAnswer::Series(s) => s
            .chunks(SERIES_PER_MESSAGE)
            .map(|c| msg(c.iter().map(|l| series_to_proto(l, &[])).collect(), vec![]))
            .collect(),
        BlockAnswer::LogEntries(s) => s
            .chunks(SERIES_PER_MESSAGE)
            .map(|c| {
                msg(
                    Vec::new(),
                    c.iter()
                        .map(|s| stream_to_proto(&s.labels, &s.entries))
                        .collect(),
                )
            })
            .collect(),
        BlockAnswer::LogSizes(s) => s
            .chunks(SERIES_PER_MESSAGE)
            .map(|c| {
                msg(
                    Vec::new(),
                    c.iter()
                        .map(|(l, sizes)| sizes_to_proto(l, sizes))
                        .collect(),
                )
            })
            .collect(),
        BlockAnswer::Streams(s) => s
            .chunks(SERIES_PER_MESSAGE)
            .map(|c| {
                msg(
                    Vec::new(),
                    c.iter().map(|l| stream_to_proto(l, &[])).collect(),
                )
            })
            .collect(),
    };
    if out.is_empty() {
        out.push(msg(Vec::new(), Vec::new()));
    }
    if let Some(last) = out.last_mut() {
        last.block_done = true;
    }
    out
}

/// Adds a message's series or streams to a block's `answer`.
pub(crate) fn add_message(answer: &mut BlockAnswer, msg: BlocksResponse) {
    match answer {
        BlockAnswer::Samples(out) => out.extend(msg.series.into_iter().map(|ts| SeriesSamples {
            samples: samples_from_proto(&ts.samples),
            labels: labels_from_proto(ts.labels),
        })),
        BlockAnswer::Series(out) => out.extend(
            msg.series
                .into_iter()
                .map(|ts| labels_from_proto(ts.labels)),
        ),
        BlockAnswer::LogEntries(out) => out.extend(msg.streams.into_iter().map(|s| {
            let (labels, entries) = stream_from_proto(s);
            LogStream { labels, entries }
        })),
        BlockAnswer::LogSizes(out) => out.extend(msg.streams.into_iter().map(sizes_from_proto)),
        BlockAnswer::Streams(out) => {
            out.extend(msg.streams.into_iter().map(|s| labels_from_proto(s.labels)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_model::logs::{EntrySize, LogEntry};
    use strata_model::{Label, Labels, MatchOp, Sample};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect())
    }

    fn meta(ulid: &str) -> BlockMeta {
        serde_json::from_value(serde_json::json!({
            "ulid": ulid, "minTime": 0, "maxTime": 10,
            "stats": {"numSeries": 0, "numSamples": 0, "numChunks": 0, "numBytes": 0},
            "compaction": {"level": 1, "sources": [ulid]}, "version": 1, "source": "ingester"
        }))
        .expect("meta")
    }

    /// Every read survives the trip through the request unchanged.
    #[test]
    fn reads_round_trip() {
        let m = vec![Matcher::new(MatchOp::Equal, "job", "api")];
        let f = vec![LineFilter::Contains("error".into())];
        let reads = [
            BlockRead::Samples {
                matchers: &m,
                min_t: -5,
                max_t: 99,
                windows: None,
            },
            BlockRead::Samples {
                matchers: &m,
                min_t: -5,
                max_t: 99,
                windows: StepWindows::new(99, 10, 3),
            },
            BlockRead::Series { matchers: &m },
            BlockRead::LogEntries {
                matchers: &m,
                filters: &f,
                start_ns: 1,
                end_ns: 2,
                limit: Some((7, Direction::Backward)),
            },
            BlockRead::LogEntries {
                matchers: &m,
                filters: &[],
                start_ns: 1,
                end_ns: 2,
                limit: None,
            },
            BlockRead::LogSizes {
                matchers: &m,
                start_ns: 3,
                end_ns: 4,
            },
            BlockRead::Streams { matchers: &m },
        ];
        let b = meta("01ARZ3NDEKTSV4RRFFQ69G5FAV");
        for read in reads {
            let decoded = DecodedRequest::decode(request("t1", &[&b], &read)).expect("decodes");
            assert_eq!(decoded.tenant, "t1");
            assert_eq!(decoded.blocks[0].ulid, b.ulid);
            assert_eq!(format!("{:?}", decoded.read()), format!("{read:?}"));
        }
    }

    /// Windows a querier cannot have meant read every sample.
    #[test]
    fn senseless_windows_read_everything() {
        let m = vec![];
        let read = BlockRead::Samples {
            matchers: &m,
            min_t: 0,
            max_t: 100,
            windows: None,
        };
        for (step, width) in [(-5, 3), (10, 10), (10, 0), (10, -1), (i64::MIN, i64::MIN)] {
            let mut req = request("t", &[], &read);
            (req.step_windows_step, req.step_windows_width) = (step, width);
            let decoded = DecodedRequest::decode(req).expect("decodes");
            assert!(
                matches!(decoded.read(), BlockRead::Samples { windows: None, .. }),
                "{step} {width}"
            );
        }
    }

    /// A block ULID that could name another directory is refused.
    #[test]
    fn path_like_ulids_are_refused() {
        let m = vec![];
        let read = BlockRead::Series { matchers: &m };
        for bad in ["../other-tenant/metrics/X", "", "a/b"] {
            let err = DecodedRequest::decode(request("t", &[&meta(bad)], &read))
                .err()
                .expect("refused");
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}");
        }
    }

    /// An answer cut into messages comes back whole, the last message done.
    #[test]
    fn answers_split_and_join() {
        let samples: Vec<SeriesSamples> = (0..SERIES_PER_MESSAGE * 2 + 3)
            .map(|i| SeriesSamples {
                labels: labels(&[("i", &i.to_string())]),
                samples: vec![Sample {
                    t: i as i64,
                    v: 1.5,
                }],
            })
            .collect();
        let answers = [
            BlockAnswer::Samples(samples.clone()),
            BlockAnswer::Series(samples.iter().map(|s| s.labels.clone()).collect()),
            BlockAnswer::LogEntries(vec![LogStream {
                labels: labels(&[("app", "a")]),
                entries: vec![LogEntry {
                    ts: 5,
                    line: "x".into(),
                    metadata: labels(&[("trace", "1")]),
                }],
            }]),
            BlockAnswer::LogSizes(vec![(
                labels(&[("app", "a")]),
                vec![EntrySize {
                    ts: 5,
                    line_hash: 9,
                    bytes: 3,
                }],
            )]),
            BlockAnswer::Streams(vec![labels(&[("app", "b")])]),
            BlockAnswer::Samples(Vec::new()),
        ];
        for answer in answers {
            let msgs = answer_messages("B", &answer);
            assert!(msgs.iter().all(|m| m.block == "B"));
            assert_eq!(msgs.iter().filter(|m| m.block_done).count(), 1);
            assert!(msgs.last().is_some_and(|m| m.block_done));
            let mut back = match &answer {
                BlockAnswer::Samples(_) => BlockAnswer::Samples(vec![]),
                BlockAnswer::Series(_) => BlockAnswer::Series(vec![]),
                BlockAnswer::LogEntries(_) => BlockAnswer::LogEntries(vec![]),
                BlockAnswer::LogSizes(_) => BlockAnswer::LogSizes(vec![]),
                BlockAnswer::Streams(_) => BlockAnswer::Streams(vec![]),
            };
            for m in msgs {
                add_message(&mut back, m);
            }
            assert_eq!(back, answer);
        }
    }
}
