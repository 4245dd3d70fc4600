//! The user's own gRPC calls (`--grpc 'package.Service/Method'` with
//! `--data JSON`), made without their `.proto` files: each server under test
//! describes the method through its server reflection service
//! (`grpc.reflection.v1`, else `v1alpha`), the JSON becomes the request's
//! bytes once, and every call sends those bytes and reads the answer as
//! bytes. A call succeeds when its status is OK.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage};
use tonic::{
    Code, Request, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    metadata::MetadataMap,
    transport::Channel,
};
use tonic_reflection::pb::v1::{
    ErrorResponse, ServerReflectionRequest, ServerReflectionResponse,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

/// The reflection services asked, newest first (their messages are the
/// same on the wire).
const REFLECTION_PATHS: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The most descriptor files one method may need.
const MAX_FILES: usize = 512;

/// A call of the user's own gRPC service, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCall {
    /// `package.Service`.
    pub service: String,
    /// `Method`.
    pub method: String,
    /// The request as protobuf JSON (`--data`; `{}` when not given).
    pub data: String,
    /// Metadata sent with the call and with the reflection requests
    /// (`--header`); Switchyard's token is never sent.
    pub headers: http::HeaderMap,
}

impl GrpcCall {
    /// Reads `package.Service/Method` (a leading `/` is allowed).
    pub fn parse(s: &str) -> Result<GrpcCall, String> {
        let name = s.trim();
        if name.len() > switchyard_core::gating::document::MAX_LABEL_LEN {
            return Err(format!(
                "--grpc: {} bytes; a method is at most {} bytes",
                name.len(),
                switchyard_core::gating::document::MAX_LABEL_LEN
            ));
        }
        let bad = || {
            format!(
                "--grpc {s:?}: give package.Service/Method, such as 'helloworld.Greeter/SayHello'"
            )
        };
        let (service, method) = name
            .strip_prefix('/')
            .unwrap_or(name)
            .split_once('/')
            .ok_or_else(bad)?;
        let ident = |part: &str| {
            part.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        if !(service.split('.').all(ident) && ident(method)) {
            return Err(bad());
        }
        Ok(GrpcCall {
            service: service.to_owned(),
            method: method.to_owned(),
            data: "{}".into(),
            headers: http::HeaderMap::new(),
        })
    }

    /// `package.Service/Method`, as reports name it.
    pub fn name(&self) -> String {
        format!("{}/{}", self.service, self.method)
    }
}

/// A `--grpc` call as one server described it: the path, the request's
/// bytes and the metadata every call sends.
#[derive(Debug, Clone)]
pub struct Resolved {
    path: PathAndQuery,
    body: Bytes,
    metadata: MetadataMap,
}

/// Finds `call`'s method through the reflection of the server behind
/// `channel` (`address` names it in errors) and makes its request.
pub async fn resolve(
    channel: &Channel,
    call: &GrpcCall,
    address: &str,
) -> Result<Resolved, String> {
    let name = call.name();
    let metadata = MetadataMap::from_headers(call.headers.clone());
    let mut reflection = Reflection {
        channel: channel.clone(),
        metadata: metadata.clone(),
        path: None,
    };
    let files = reflection
        .files_of(&call.service)
        .await
        .map_err(|e| format!("--grpc {name}: {address} {e}"))?;
    let mut pool = DescriptorPool::global();
    pool.add_file_descriptor_protos(files).map_err(|e| {
        format!(
            "--grpc {name}: the descriptors {address} gave through reflection do not build: {e}"
        )
    })?;
    let service = pool.get_service_by_name(&call.service).ok_or_else(|| {
        format!(
            "--grpc {name}: {address}'s reflection describes no service {}",
            call.service
        )
    })?;
    let Some(method) = service.methods().find(|m| m.name() == call.method) else {
        let methods: Vec<String> = service.methods().map(|m| m.name().to_owned()).collect();
        return Err(format!(
            "--grpc {name}: {} on {address} has no method {} (its methods: {})",
            call.service,
            call.method,
            methods.join(", ")
        ));
    };
    if method.is_client_streaming() || method.is_server_streaming() {
        return Err(format!(
            "--grpc {name}: a streaming method; --grpc calls unary methods"
        ));
    }
    let mut json = serde_json::Deserializer::from_str(&call.data);
    let request = DynamicMessage::deserialize_with_options(
        method.input(),
        &mut json,
        &DeserializeOptions::new(),
    )
    .and_then(|m| json.end().map(|()| m))
    .map_err(|e| {
        format!(
            "--data for {name}: not a {} in protobuf JSON: {e}",
            method.input().full_name()
        )
    })?;
    let path = format!("/{}/{}", call.service, call.method)
        .parse()
        .map_err(|e| format!("--grpc {name}: {e}"))?;
    Ok(Resolved {
        path,
        body: request.encode_to_vec().into(),
        metadata,
    })
}

/// One unary call of a resolved method within `deadline`; the answer's
/// bytes are read and dropped.
pub async fn call(
    channel: &Channel,
    resolved: &Resolved,
    deadline: std::time::Duration,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("gRPC: {e}")))?;
    let mut req = Request::new(resolved.body.clone());
    *req.metadata_mut() = resolved.metadata.clone();
    req.set_timeout(deadline);
    grpc.unary(req, resolved.path.clone(), Raw).await.map(drop)
}

/// The reflection service of one server.
struct Reflection {
    channel: Channel,
    metadata: MetadataMap,
    /// The reflection service that answered.
    path: Option<&'static str>,
}

impl Reflection {
    /// The files that define `service`, with every file they import that
    /// the server knows (the well-known types are known here too).
    async fn files_of(
        &mut self,
        service: &str,
    ) -> Result<Vec<prost_types::FileDescriptorProto>, String> {
        let mut files = BTreeMap::new();
        let first = self
            .ask(MessageRequest::FileContainingSymbol(service.to_owned()))
            .await?;
        match first {
            MessageResponse::FileDescriptorResponse(r) => add(&mut files, r.file_descriptor_proto)?,
            MessageResponse::ErrorResponse(e) if e.error_code == Code::NotFound as i32 => {
                let services = self.services().await.unwrap_or_default();
                return Err(format!(
                    "does not serve {service} (its services: {})",
                    services.join(", ")
                ));
            }
            other => return Err(unexpected(&other)),
        }
        let known = DescriptorPool::global();
        loop {
            let missing: Vec<String> = files
                .values()
                .flat_map(|f: &prost_types::FileDescriptorProto| f.dependency.iter())
                .filter(|d| !files.contains_key(*d) && known.get_file_by_name(d).is_none())
                .cloned()
                .collect();
            let Some(name) = missing.into_iter().next() else {
                break;
            };
            if files.len() >= MAX_FILES {
                return Err(format!(
                    "describes {service} with more than {MAX_FILES} files"
                ));
            }
            match self
                .ask(MessageRequest::FileByFilename(name.clone()))
                .await?
            {
                MessageResponse::FileDescriptorResponse(r) => {
                    add(&mut files, r.file_descriptor_proto)?;
                    if !files.contains_key(&name) {
                        return Err(format!("answered for {name} with other files"));
                    }
                }
                MessageResponse::ErrorResponse(e) => {
                    return Err(format!(
                        "cannot give {name}, which {service}'s files import: {}",
                        e.error_message
                    ));
                }
                other => return Err(unexpected(&other)),
            }
        }
        Ok(files.into_values().collect())
    }

    /// The services the server lists.
    async fn services(&mut self) -> Result<Vec<String>, String> {
        match self
            .ask(MessageRequest::ListServices(String::new()))
            .await?
        {
            MessageResponse::ListServicesResponse(r) => {
                Ok(r.service.into_iter().map(|s| s.name).collect())
            }
            other => Err(unexpected(&other)),
        }
    }

    /// One request on its own stream, to the reflection service that
    /// answers (v1 first, then v1alpha).
    async fn ask(&mut self, request: MessageRequest) -> Result<MessageResponse, String> {
        let paths: Vec<&'static str> = match self.path {
            Some(p) => vec![p],
            None => REFLECTION_PATHS.to_vec(),
        };
        for path in paths {
            let mut grpc = tonic::client::Grpc::new(self.channel.clone());
            grpc.ready()
                .await
                .map_err(|e| format!("cannot be reached: {e}"))?;
            let mut req = Request::new(tokio_stream::once(ServerReflectionRequest {
                host: String::new(),
                message_request: Some(request.clone()),
            }));
            *req.metadata_mut() = self.metadata.clone();
            req.set_timeout(std::time::Duration::from_secs(10));
            let answer = grpc
                .streaming(
                    req,
                    PathAndQuery::from_static(path),
                    tonic_prost::ProstCodec::<ServerReflectionRequest, ServerReflectionResponse>::default(),
                )
                .await;
            let message = match answer {
                Ok(r) => r.into_inner().message().await,
                Err(s) => Err(s),
            };
            let message = match message {
                Ok(Some(m)) => m.message_response,
                Ok(None) => return Err("closed its reflection stream without an answer".into()),
                Err(s) if s.code() == Code::Unimplemented && self.path.is_none() => continue,
                // Some servers answer "not found" as the stream's status
                // rather than as an error response.
                Err(s) if s.code() == Code::NotFound => {
                    Some(MessageResponse::ErrorResponse(ErrorResponse {
                        error_code: Code::NotFound as i32,
                        error_message: s.message().to_owned(),
                    }))
                }
                Err(s) => return Err(reflection_error(&s)),
            };
            self.path = Some(path);
            return message.ok_or_else(|| "answered a reflection request with nothing".to_owned());
        }
        Err("serves no server reflection (grpc.reflection.v1 or v1alpha); --grpc needs it to find the method's request type".into())
    }
}

fn reflection_error(s: &Status) -> String {
    format!(
        "refused a reflection request: {} {}",
        switchyard_core::telemetry::metrics::code_name(s.code() as i32),
        s.message()
    )
}

fn unexpected(r: &MessageResponse) -> String {
    match r {
        MessageResponse::ErrorResponse(e) => format!(
            "answered a reflection request with an error: {}",
            e.error_message
        ),
        _ => "answered a reflection request with another kind of answer".into(),
    }
}

/// Adds the encoded descriptor files to `files` by name.
fn add(
    files: &mut BTreeMap<String, prost_types::FileDescriptorProto>,
    encoded: Vec<Vec<u8>>,
) -> Result<(), String> {
    for bytes in encoded {
        let file = prost_types::FileDescriptorProto::decode(bytes.as_slice())
            .map_err(|e| format!("gave a descriptor that does not decode: {e}"))?;
        files.entry(file.name().to_owned()).or_insert(file);
    }
    Ok(())
}

/// Messages as the bytes they are on the wire.
#[derive(Debug, Clone, Copy)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_is_read_as_package_service_slash_method() {
        let c = GrpcCall::parse("helloworld.Greeter/SayHello").expect("a method");
        assert_eq!(
            (c.service.as_str(), c.method.as_str()),
            ("helloworld.Greeter", "SayHello")
        );
        assert_eq!(
            GrpcCall::parse("/a.B/C").map(|c| c.name()),
            Ok("a.B/C".to_owned())
        );
        for bad in [
            "Greeter", "a.B/", "/C", "a..B/C", "a.B/C/D", "a.B/C D", "a-b.C/D", "1a.B/C",
        ] {
            assert!(GrpcCall::parse(bad).is_err(), "{bad} was accepted");
        }
        assert!(GrpcCall::parse(&format!("a.B/{}", "C".repeat(300))).is_err());
    }
}
