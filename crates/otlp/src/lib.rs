//! OpenTelemetry (OTLP/HTTP) requests in Strata's write model: bodies
//! decoded from protobuf or JSON (the OTLP encodings, with hex trace ids and
//! string 64-bit integers in JSON), metrics translated into the
//! remote-write request the metric write path takes ([`metrics`]), and the
//! answers OTLP senders read (an empty `Export*ServiceResponse`, or a
//! `google.rpc.Status` naming the error), encoded as the request was.
//!
//! The message types are the OpenTelemetry project's own
//! (`opentelemetry-proto`); decompression and size limits belong to the
//! caller.

pub mod attributes;
pub mod logs;
pub mod metrics;
pub mod names;

pub use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;

use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The two OTLP/HTTP body encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The encoding a request's `Content-Type` names; `None` for anything
    /// but `application/x-protobuf` and `application/json` (parameters such
    /// as `charset` are ignored).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Self::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Some(Self::Json)
        } else {
            None
        }
    }

    /// The `Content-Type` of a body in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// A body that is not the message it claims to be.
#[derive(Debug, thiserror::Error)]
#[error("request body is not a valid OTLP {what} in {encoding:?}: {message}")]
pub struct DecodeError {
    what: &'static str,
    encoding: Encoding,
    message: String,
}

/// Decodes an (uncompressed) OTLP body.
pub fn decode<M: Message + Default + DeserializeOwned>(
    body: &[u8],
    encoding: Encoding,
    what: &'static str,
) -> Result<M, DecodeError> {
    let err = |message: String| DecodeError {
        what,
        encoding,
        message,
    };
    match encoding {
        Encoding::Protobuf => M::decode(body).map_err(|e| err(e.to_string())),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| err(e.to_string())),
    }
}

/// Encodes an answer in the request's encoding.
pub fn encode<M: Message + Serialize>(message: &M, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => message.encode_to_vec(),
        // Serializing these generated types cannot fail: no maps with
        // non-string keys, no non-finite floats in answers.
        Encoding::Json => serde_json::to_vec(message).unwrap_or_default(),
    }
}

/// The body of a successful export: an empty `Export*ServiceResponse`
/// (no partial success), which is no bytes in protobuf and `{}` in JSON.
pub fn empty_export_response(encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => ExportMetricsServiceResponse::default().encode_to_vec(),
        Encoding::Json => b"{}".to_vec(),
    }
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error answer.
#[derive(Clone, PartialEq, Message, Serialize)]
pub struct Status {
    /// A `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

impl Status {
    /// The status of an HTTP error answer, its code chosen as Mimir does.
    pub fn for_http(http_status: u16, message: String) -> Self {
        let code = match http_status {
            400 | 413 | 415 => 3, // INVALID_ARGUMENT
            429 => 8,             // RESOURCE_EXHAUSTED
            503 => 14,            // UNAVAILABLE
            _ => 13,              // INTERNAL
        };
        Self { code, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            Encoding::from_content_type("application/x-protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            Encoding::from_content_type("application/json; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
        assert_eq!(Encoding::from_content_type(""), None);
    }

    #[test]
    fn json_bodies_in_the_otlp_encoding() {
        let body = br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
          "scopeMetrics":[{"metrics":[{"name":"up","gauge":{"dataPoints":[{"timeUnixNano":"1700000000000000000","asInt":"7",
          "exemplars":[{"timeUnixNano":"1700000000000000000","asDouble":1.5,"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}}]}]}]}"#;
        let req: ExportMetricsServiceRequest = decode(body, Encoding::Json, "metrics").unwrap();
        let point = &req.resource_metrics[0].scope_metrics[0].metrics[0];
        let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Gauge(g)) = &point.data
        else {
            panic!("a gauge: {point:?}")
        };
        assert_eq!(g.data_points[0].time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(g.data_points[0].exemplars[0].span_id.len(), 8);
        let err = decode::<ExportMetricsServiceRequest>(
            b"{\"resourceMetrics\":7}",
            Encoding::Json,
            "metrics",
        )
        .unwrap_err();
        assert!(err.to_string().contains("OTLP metrics"), "{err}");
        assert!(
            decode::<ExportMetricsServiceRequest>(&[0xff, 0xff], Encoding::Protobuf, "metrics")
                .is_err()
        );
    }

    #[test]
    fn empty_responses_decode_as_no_partial_success() {
        let proto = empty_export_response(Encoding::Protobuf);
        let r = ExportMetricsServiceResponse::decode(proto.as_slice()).unwrap();
        assert_eq!(r.partial_success, None);
        let json: ExportMetricsServiceResponse =
            serde_json::from_slice(&empty_export_response(Encoding::Json)).unwrap();
        assert_eq!(json.partial_success, None);
    }

    #[test]
    fn status_bodies() {
        let s = Status::for_http(429, "slow down".into());
        assert_eq!(s.code, 8);
        let json = String::from_utf8(encode(&s, Encoding::Json)).unwrap();
        assert_eq!(json, r#"{"code":8,"message":"slow down"}"#);
        assert_eq!(
            Status::decode(encode(&s, Encoding::Protobuf).as_slice()).unwrap(),
            s
        );
    }
}
