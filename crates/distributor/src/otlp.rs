//! OTLP/HTTP pushes (`/otlp/v1/metrics`): the body's encoding and
//! compression checked as Mimir does (protobuf or JSON; gzip, zstd or
//! none; anything else 415), decompressed within the request size limit,
//! translated by [`strata_otlp`] under the tenant's `otel_*` limits, and
//! stored through the remote-write path, so the same validation, limits and
//! replication apply. Data points Strata cannot store (delta temporality,
//! exponential histograms) are dropped and reported with the rest of the
//! request's rejections, as Mimir reports translation errors.

use std::borrow::Cow;

use strata_limits::OtelTranslationStrategy;
use strata_model::Labels;
use strata_otlp::logs::translate_logs;
use strata_otlp::metrics::{MetricsTranslation, translate_metrics};
use strata_otlp::names::NameStrategy;
use strata_otlp::{Encoding, ExportLogsServiceRequest, ExportMetricsServiceRequest};

use crate::logs::{LogPushResult, RawStream};
use crate::{DecodedWrite, Distributor, Limits, PushError, PushResult, decompress_gzip};

/// How an OTLP body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The encoding and compression of an OTLP request, from its headers.
pub fn check_otlp_headers(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> Result<(Encoding, Compression), PushError> {
    let content_type = content_type.unwrap_or("");
    let encoding = Encoding::from_content_type(content_type).ok_or_else(|| {
        PushError::UnsupportedMediaType(format!(
            "unsupported content type {content_type:?}: OTLP/HTTP bodies are application/x-protobuf or application/json"
        ))
    })?;
    let compression = match content_encoding.map(|e| e.trim().to_ascii_lowercase()) {
        None => Compression::None,
        Some(e) if e.is_empty() || e == "identity" => Compression::None,
        Some(e) if e == "gzip" => Compression::Gzip,
        Some(e) if e == "zstd" => Compression::Zstd,
        Some(e) => {
            return Err(PushError::UnsupportedMediaType(format!(
                "unsupported content encoding {e:?}: OTLP bodies are accepted uncompressed, gzip or zstd"
            )));
        }
    };
    Ok((encoding, compression))
}

/// The uncompressed body (the body itself when it is not compressed),
/// refused (413) beyond `max_size` either way.
pub fn decompress_otlp(
    body: &[u8],
    compression: Compression,
    max_size: usize,
) -> Result<Cow<'_, [u8]>, PushError> {
    if body.len() > max_size {
        return Err(PushError::TooLarge {
            size: body.len(),
            limit: max_size,
        });
    }
    match compression {
        Compression::None => Ok(Cow::Borrowed(body)),
        Compression::Gzip => decompress_gzip(body, max_size).map(Cow::Owned),
        Compression::Zstd => {
            use std::io::Read;
            let mut out = Vec::new();
            zstd::stream::read::Decoder::new(body)
                .and_then(|d| d.take(max_size as u64 + 1).read_to_end(&mut out))
                .map_err(|e| PushError::Decode(format!("request body is not valid zstd: {e}")))?;
            if out.len() > max_size {
                return Err(PushError::TooLarge {
                    size: out.len(),
                    limit: max_size,
                });
            }
            Ok(Cow::Owned(out))
        }
    }
}

/// Decodes an uncompressed OTLP metrics body.
pub fn decode_otlp_metrics(
    body: &[u8],
    encoding: Encoding,
) -> Result<ExportMetricsServiceRequest, PushError> {
    strata_otlp::decode(body, encoding, "metrics").map_err(|e| PushError::Decode(e.to_string()))
}

/// Decodes an uncompressed OTLP logs body.
pub fn decode_otlp_logs(
    body: &[u8],
    encoding: Encoding,
) -> Result<ExportLogsServiceRequest, PushError> {
    strata_otlp::decode(body, encoding, "logs").map_err(|e| PushError::Decode(e.to_string()))
}

/// A stream's labels in the text a Loki push carries, escaped so that
/// parsing them back gives the same values.
fn stream_text(labels: &Labels) -> String {
    let mut out = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&l.name);
        out.push_str("=\"");
        for c in l.value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// The translation settings of a tenant's limits.
fn translation(limits: &Limits) -> MetricsTranslation {
    MetricsTranslation {
        names: match limits.otel_translation_strategy {
            OtelTranslationStrategy::UnderscoreEscapingWithSuffixes => NameStrategy::WithSuffixes,
            OtelTranslationStrategy::UnderscoreEscapingWithoutSuffixes => {
                NameStrategy::WithoutSuffixes
            }
        },
        promote_resource_attributes: limits.promote_otel_resource_attributes.clone(),
        keep_identifying_resource_attributes: limits.otel_keep_identifying_resource_attributes,
        promote_scope_metadata: limits.otel_promote_scope_metadata,
    }
}

impl Distributor {
    /// Translates and stores an OTLP metrics request of `body_bytes`
    /// (decoded) for `tenant`; what could not be translated is among the
    /// result's rejections.
    pub async fn push_otlp_metrics(
        &self,
        tenant: &str,
        req: ExportMetricsServiceRequest,
        body_bytes: usize,
    ) -> Result<PushResult, PushError> {
        let limits = self.overrides.for_tenant(tenant);
        let translated = translate_metrics(req, &translation(&limits), body_bytes)
            .map_err(|e| PushError::Expands(e.to_string()))?;
        let mut result =
            if translated.request.timeseries.is_empty() && translated.request.metadata.is_empty() {
                PushResult::default()
            } else {
                self.push(tenant, DecodedWrite::from_request(translated.request)?)
                    .await?
            };
        for d in translated.dropped {
            self.reject(&mut result, tenant, d.reason, d.message, d.points);
        }
        Ok(result)
    }
}

impl Distributor {
    /// Translates an OTLP logs request under the tenant's `otlp_config`
    /// and stores it through the Loki push path (same validation and limits).
    pub async fn push_otlp_logs(
        &self,
        tenant: &str,
        req: ExportLogsServiceRequest,
        now_ns: i64,
    ) -> Result<LogPushResult, PushError> {
        let limits = self.overrides.for_tenant(tenant);
        let streams = translate_logs(req, &limits.otlp_config, now_ns)
            .map_err(|e| PushError::Decode(e.to_string()))?;
        let raw = streams
            .into_iter()
            .map(|s| RawStream {
                labels: stream_text(&s.labels),
                entries: s.entries,
            })
            .collect();
        self.push_logs(tenant, raw, now_ns).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_texts_parse_back_to_the_same_labels() {
        let labels = Labels::new(vec![
            strata_model::Label::new("a", "plain"),
            strata_model::Label::new("b", "quote \" back\\slash\nnew line\ttab é"),
        ]);
        let text = stream_text(&labels);
        assert_eq!(
            strata_model::syntax::parse_stream_labels(&text).unwrap(),
            labels
        );
    }

    #[test]
    fn headers_as_mimir_checks_them() {
        assert_eq!(
            check_otlp_headers(Some("application/x-protobuf"), None).unwrap(),
            (Encoding::Protobuf, Compression::None)
        );
        assert_eq!(
            check_otlp_headers(Some("application/json"), Some("gzip")).unwrap(),
            (Encoding::Json, Compression::Gzip)
        );
        assert_eq!(
            check_otlp_headers(Some("application/x-protobuf"), Some("zstd"))
                .unwrap()
                .1,
            Compression::Zstd
        );
        for (ct, enc) in [
            (None, None),
            (Some("text/plain"), None),
            (Some("application/x-protobuf"), Some("br")),
        ] {
            let err = check_otlp_headers(ct, enc).unwrap_err();
            assert_eq!(err.status(), 415, "{ct:?} {enc:?}: {err}");
        }
    }

    #[test]
    fn bodies_are_bounded_before_and_after_decompression() {
        let raw = vec![b'a'; 10_000];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            decompress_otlp(&gz, Compression::Gzip, 20_000).unwrap(),
            raw
        );
        let err = decompress_otlp(&gz, Compression::Gzip, 5_000).unwrap_err();
        assert_eq!(err.status(), 413);
        let zs = zstd::stream::encode_all(raw.as_slice(), 3).unwrap();
        assert_eq!(
            decompress_otlp(&zs, Compression::Zstd, 20_000).unwrap(),
            raw
        );
        assert_eq!(
            decompress_otlp(&zs, Compression::Zstd, 5_000)
                .unwrap_err()
                .status(),
            413
        );
        assert_eq!(
            decompress_otlp(b"not zstd", Compression::Zstd, 5_000)
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            decompress_otlp(&raw, Compression::None, 5_000)
                .unwrap_err()
                .status(),
            413
        );
    }
}
