//! How a server stream is written on REST: newline-delimited JSON
//! (grpc-gateway's), or server-sent events for an `EventSource`, which
//! resumes from its `Last-Event-ID`.

use http::header;
use prost_reflect::{DynamicMessage, Kind, ReflectMessage, Value};

use crate::rest::Refusal;

/// How a server-streaming RPC's messages are written on REST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// `application/x-ndjson`: one JSON object per line, `{"result": ...}`
    /// or `{"error": ...}` (grpc-gateway's form).
    Ndjson,
    /// `text/event-stream`: each message one event, its `data` the message's
    /// JSON and its `id` the message's `revision` (where the message has
    /// one), so a reconnecting client's `Last-Event-ID` resumes after it; a
    /// failure after the start is an event named `status` whose `data` is
    /// the `google.rpc.Status` JSON.
    Sse,
}

impl Framing {
    /// SSE when the request accepts `text/event-stream` and not NDJSON
    /// (what an `EventSource` sends); NDJSON otherwise.
    pub(super) fn for_request(headers: &http::HeaderMap) -> Framing {
        let accepts = |media: &str| {
            headers
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|m| m.split(';').next().is_some_and(|m| m.trim() == media))
        };
        if accepts("text/event-stream") && !accepts("application/x-ndjson") {
            Framing::Sse
        } else {
            Framing::Ndjson
        }
    }

    pub(super) fn content_type(self) -> &'static str {
        match self {
            Framing::Ndjson => "application/x-ndjson",
            Framing::Sse => "text/event-stream",
        }
    }

    /// One message (its JSON and revision) or the failure that ended the
    /// stream, framed. The JSON is written on one line, so `data:` holds it
    /// whole.
    pub(super) fn frame(self, message: Result<(String, Option<u64>), Refusal>) -> String {
        match (self, message) {
            (Framing::Ndjson, Ok((json, _))) => format!("{{\"result\":{json}}}\n"),
            (Framing::Ndjson, Err(r)) => format!("{{\"error\":{}}}\n", r.body()),
            (Framing::Sse, Ok((json, Some(revision)))) => {
                format!("id: {revision}\ndata: {json}\n\n")
            }
            (Framing::Sse, Ok((json, None))) => format!("data: {json}\n\n"),
            (Framing::Sse, Err(r)) => format!("event: status\ndata: {}\n\n", r.body()),
        }
    }
}

/// An SSE client that reconnects sends the last event's id, the revision it
/// holds, in `Last-Event-ID`: the watch resumes after it. It wins over a
/// `since_revision` in the query, which an `EventSource` sends again
/// unchanged on every reconnect (the header is always the later position).
pub(super) fn resume_from_last_event_id(
    request: &mut DynamicMessage,
    headers: &http::HeaderMap,
) -> Result<(), Refusal> {
    let Some(last) = headers.get("last-event-id") else {
        return Ok(());
    };
    let Some(field) = request
        .descriptor()
        .get_field_by_name("since_revision")
        .filter(|f| f.kind() == Kind::Int64)
    else {
        return Ok(());
    };
    let revision = last
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            Refusal::invalid("Last-Event-ID must be a revision (a non-negative integer)")
        })?;
    request.set_field(&field, Value::I64(revision));
    Ok(())
}
