//! The user's own service, as a rollout sees it: an HTTP service that
//! evaluates a flag through Switchyard on every request (`EvaluateFlag`,
//! the caller's id as the targeting key), serves the variant it got, and
//! exports OpenTelemetry's HTTP server duration histogram labelled with the
//! feature-flag attributes (`feature_flag_key`,
//! `feature_flag_result_variant`, `http_response_status_code`) for
//! Prometheus to scrape. A delay can be injected into one variant's
//! requests; and [`Load`] drives it with a steady rate of callers.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{Query, State},
    routing::get,
};
use switchyard::{api::v1::EvaluateFlagRequest, client::Client};

/// The histogram's bucket bounds, seconds.
const BOUNDS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Series {
    buckets: [u64; BOUNDS.len()],
    count: u64,
    sum: f64,
}

struct Inner {
    flag: String,
    /// Switchyard's replicas: the first that answers evaluates.
    replicas: std::sync::RwLock<Vec<Client>>,
    /// Injected into `slow_variant`'s requests, ms.
    delay_ms: AtomicU64,
    slow_variant: String,
    /// By (variant, status).
    series: Mutex<BTreeMap<(String, u16), Series>>,
}

/// The running service.
pub struct Shop {
    pub addr: std::net::SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Shop {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(serde::Deserialize)]
struct Caller {
    user: String,
}

async fn checkout(
    State(s): State<Arc<Inner>>,
    Query(c): Query<Caller>,
) -> (http::StatusCode, String) {
    let started = Instant::now();
    let mut context = pbjson_types::Struct::default();
    context.fields.insert(
        "targetingKey".into(),
        pbjson_types::Value {
            kind: Some(pbjson_types::value::Kind::StringValue(c.user)),
        },
    );
    let mut variant = None;
    let replicas = s.replicas.read().unwrap().clone();
    for replica in &replicas {
        let answer = replica
            .flags()
            .evaluate_flag(EvaluateFlagRequest {
                flag_key: s.flag.clone(),
                context: Some(context.clone()),
                ..Default::default()
            })
            .await;
        if let Ok(a) = answer {
            variant = Some(a.into_inner().variant);
            break;
        }
    }
    let (status, variant) = match variant {
        Some(v) => (200, v),
        // No replica answered: the service fails (and says so).
        None => (503, "unknown".to_owned()),
    };
    if variant == s.slow_variant {
        let ms = s.delay_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
    let took = started.elapsed().as_secs_f64();
    {
        let mut series = s.series.lock().unwrap();
        let e = series.entry((variant.clone(), status)).or_default();
        for (i, b) in BOUNDS.iter().enumerate() {
            if took <= *b {
                e.buckets[i] += 1;
            }
        }
        e.count += 1;
        e.sum += took;
    }
    (
        http::StatusCode::from_u16(status).unwrap(),
        format!("{variant}\n"),
    )
}

async fn metrics(State(s): State<Arc<Inner>>) -> String {
    let name = "http_server_request_duration_seconds";
    let mut out = format!("# TYPE {name} histogram\n");
    for ((variant, status), e) in s.series.lock().unwrap().iter() {
        let labels = format!(
            "feature_flag_key=\"{}\",feature_flag_result_variant=\"{variant}\",http_response_status_code=\"{status}\"",
            s.flag
        );
        for (b, n) in BOUNDS.iter().zip(e.buckets) {
            out.push_str(&format!("{name}_bucket{{{labels},le=\"{b}\"}} {n}\n"));
        }
        out.push_str(&format!(
            "{name}_bucket{{{labels},le=\"+Inf\"}} {}\n",
            e.count
        ));
        out.push_str(&format!("{name}_sum{{{labels}}} {}\n", e.sum));
        out.push_str(&format!("{name}_count{{{labels}}} {}\n", e.count));
    }
    out
}

impl Shop {
    /// Starts the service on loopback, evaluating `flag` through
    /// `replicas` (admin clients); `slow_variant`'s requests are delayed by
    /// [`Shop::inject`].
    pub async fn start(flag: &str, replicas: Vec<Client>, slow_variant: &str) -> Shop {
        let inner = Arc::new(Inner {
            flag: flag.to_owned(),
            replicas: std::sync::RwLock::new(replicas),
            delay_ms: AtomicU64::new(0),
            slow_variant: slow_variant.to_owned(),
            series: Mutex::default(),
        });
        let app = Router::new()
            .route("/checkout", get(checkout))
            .route("/metrics", get(metrics))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Shop { addr, inner, task }
    }

    /// Evaluates through `replicas` from now on.
    pub fn evaluate_through(&self, replicas: Vec<Client>) {
        *self.inner.replicas.write().unwrap() = replicas;
    }

    /// Delays every request served the slow variant by `ms` from now on.
    pub fn inject(&self, ms: u64) {
        self.inner.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Requests served so far, by variant.
    pub fn served(&self) -> BTreeMap<String, u64> {
        let mut by = BTreeMap::new();
        for ((variant, _), e) in self.inner.series.lock().unwrap().iter() {
            *by.entry(variant.clone()).or_default() += e.count;
        }
        by
    }
}

/// Callers of the service at a steady rate, each a new user id, until
/// dropped (or `limit` requests).
pub struct Load {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Load {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Load {
    /// Starts `rate` requests per second to `shop`, at most `limit`.
    pub fn start(shop: &Shop, rate: u32, limit: u64) -> Load {
        let url = format!("http://{}/checkout", shop.addr);
        let task = tokio::spawn(async move {
            let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http();
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
            for n in 0..limit {
                tick.tick().await;
                let uri: http::Uri = format!("{url}?user=user-{n}").parse().unwrap();
                let client = client.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), client.get(uri)).await;
                });
            }
        });
        Load { task }
    }
}
