//! The Prometheus HTTP API client of the budget reads: an instant query
//! (`GET /api/v1/query`) answered within a bounded timeout, and every way it
//! can fail turned into a reason for the fallback tier.
//!
//! An outgoing HTTP adapter (the server crate builds it from `prometheus_url`);
//! the gating capability sees only [`BudgetQuery`].

use std::{future::Future, pin::Pin, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::Value as Json;

use switchyard_core::gating::budget::{Answer, BudgetQuery};

/// The largest answer read (a budget query answers one series).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// A Prometheus server's HTTP API.
#[derive(Clone)]
pub struct Prometheus {
    base: String,
    timeout: Duration,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Prometheus {
    /// A client of `base_url` (`http://host:9090`, with or without a path
    /// prefix); each query may take at most `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Prometheus {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        Prometheus {
            base: base_url.trim_end_matches('/').to_owned(),
            timeout,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    async fn query(&self, query: &str) -> Answer {
        let url = format!(
            "{}/api/v1/query?{}",
            self.base,
            form_urlencoded::Serializer::new(String::new())
                .append_pair("query", query)
                .finish()
        );
        let uri: http::Uri = match url.parse() {
            Ok(u) => u,
            Err(e) => return Answer::Failed(format!("the query URL {url:?} is not valid: {e}")),
        };
        let fetch = async {
            let resp = self
                .client
                .get(uri)
                .await
                .map_err(|e| format!("Prometheus at {} is unreachable: {e}", self.base))?;
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading Prometheus' answer failed: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = match tokio::time::timeout(self.timeout, fetch).await {
            Err(_) => {
                return Answer::Failed(format!(
                    "Prometheus at {} did not answer within {} ms",
                    self.base,
                    self.timeout.as_millis()
                ));
            }
            Ok(Err(reason)) => return Answer::Failed(reason),
            Ok(Ok(r)) => r,
        };
        interpret(status.as_u16(), &body)
    }
}

/// Turns the HTTP status and body of an instant query into a value or the
/// reason there is none.
pub fn interpret(status: u16, body: &[u8]) -> Answer {
    let json: Json = match serde_json::from_slice(body) {
        Ok(j) => j,
        Err(_) => {
            return Answer::Failed(format!(
                "Prometheus answered HTTP {status} with a body that is not JSON"
            ));
        }
    };
    if status != 200 || json["status"] != "success" {
        let error = json["error"].as_str().unwrap_or("no error given");
        return Answer::Failed(format!("Prometheus answered HTTP {status}: {error}"));
    }
    let data = &json["data"];
    let value = match data["resultType"].as_str() {
        Some("scalar") => &data["result"][1],
        Some("vector") => {
            let result = data["result"].as_array().map_or(&[][..], Vec::as_slice);
            match result {
                [] => return Answer::Failed("the budget query returned no series".into()),
                [one] => &one["value"][1],
                many => {
                    return Answer::Failed(format!(
                        "the budget query returned {} series; it must return one",
                        many.len()
                    ));
                }
            }
        }
        other => {
            return Answer::Failed(format!(
                "the budget query returned a {} result; it must return one value",
                other.unwrap_or("missing")
            ));
        }
    };
    // Prometheus writes sample values as strings: "0.72", "NaN", "+Inf".
    match value.as_str().map(str::trim) {
        Some("NaN") => Answer::Value(f64::NAN),
        Some("+Inf" | "Inf") => Answer::Value(f64::INFINITY),
        Some("-Inf") => Answer::Value(f64::NEG_INFINITY),
        Some(v) => match v.parse::<f64>() {
            Ok(x) => Answer::Value(x),
            Err(_) => Answer::Failed(format!("Prometheus answered the value {v:?}, not a number")),
        },
        None => Answer::Failed("Prometheus answered a sample without a value".into()),
    }
}

impl BudgetQuery for Prometheus {
    fn instant<'a>(&'a self, query: &'a str) -> Pin<Box<dyn Future<Output = Answer> + Send + 'a>> {
        Box::pin(self.query(query))
    }

    fn describe(&self) -> String {
        self.base.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_values_or_reasons() {
        let vector = |values: &[&str]| {
            let result: Vec<String> = values
                .iter()
                .map(|v| format!(r#"{{"metric":{{}},"value":[1,"{v}"]}}"#))
                .collect();
            format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
                result.join(",")
            )
        };
        assert_eq!(
            interpret(200, vector(&["0.72"]).as_bytes()),
            Answer::Value(0.72)
        );
        assert!(
            matches!(interpret(200, vector(&["NaN"]).as_bytes()), Answer::Value(v) if v.is_nan())
        );
        assert_eq!(
            interpret(200, vector(&["+Inf"]).as_bytes()),
            Answer::Value(f64::INFINITY)
        );
        for (status, body, reason) in [
            (200, vector(&[]), "no series"),
            (200, vector(&["1", "2"]), "2 series"),
            (
                400,
                r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#.to_owned(),
                "HTTP 400: parse error",
            ),
            (502, "<html>".to_owned(), "not JSON"),
            (
                200,
                r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#.to_owned(),
                "a matrix result",
            ),
        ] {
            match interpret(status, body.as_bytes()) {
                Answer::Failed(r) => assert!(r.contains(reason), "{r}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
