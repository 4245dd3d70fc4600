//! The route table of the REST shims, built from the `google.api.http`
//! annotations in the descriptors: every annotated binding is a route, and
//! nothing else is.

use http::{Method, uri::PathAndQuery};
use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MethodDescriptor};

use switchyard_api::{
    annotations::{self, field_at},
    template::Template,
};

/// Where the request body goes.
#[derive(Debug, Clone)]
pub enum BodyRule {
    /// The route takes no body; every non-path field comes from the query.
    None,
    /// `body: "*"`: the body is the request message (minus path fields).
    Whole,
    /// `body: "field"`: the body is that field; the rest comes from the query.
    Field(FieldDescriptor),
}

/// One REST route: an HTTP binding of an RPC.
#[derive(Debug, Clone)]
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The path template.
    pub template: Template,
    /// Where the body goes.
    pub body: BodyRule,
    /// The response field sent as the body (`response_body`), or the whole
    /// response.
    pub response_body: Option<FieldDescriptor>,
    /// The RPC this route calls.
    pub rpc: MethodDescriptor,
    /// The gRPC path of the RPC, `/package.Service/Method`.
    pub grpc_path: PathAndQuery,
}

/// What a request's method and path matched.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// A route, with the path's variables (field path, decoded value).
    Found(&'a Route, Vec<(&'a str, String)>),
    /// The path exists, with other methods.
    MethodNotAllowed(Vec<Method>),
    /// No route has this path.
    NotFound,
}

/// Every route of the API.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Builds the table from an encoded `FileDescriptorSet`, for the services
    /// in `package`.
    pub fn from_descriptors(encoded: &[u8], package: &str) -> Result<RouteTable, String> {
        let pool = DescriptorPool::decode(encoded).map_err(|e| e.to_string())?;
        let mut routes = Vec::new();
        for service in pool.services().filter(|s| s.package_name() == package) {
            for rpc in service.methods() {
                for b in annotations::bindings(&pool, &rpc) {
                    routes.push(route(&rpc, &b)?);
                }
            }
        }
        // Routes with more literal segments win over variables.
        routes.sort_by_key(|r| std::cmp::Reverse(r.template.specificity()));
        Ok(RouteTable { routes })
    }

    /// Every route, most specific first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Finds the route for a request. Only the most specific templates that
    /// match the path count: `/v1/flags/x:evaluate` is the evaluate route's
    /// path, never also a flag named `x:evaluate`.
    ///
    /// HEAD is served wherever GET is, as HTTP says (the answer is GET's,
    /// without its body).
    pub fn find(&self, method: &Method, path: &str) -> Lookup<'_> {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        let mut allowed = Vec::new();
        let mut best = None;
        for r in &self.routes {
            let specificity = r.template.specificity();
            if best.is_some_and(|b| specificity < b) {
                break;
            }
            if let Some(vars) = r.template.matches(path) {
                best = Some(specificity);
                if r.method == method {
                    return Lookup::Found(r, vars);
                }
                if !allowed.contains(&r.method) {
                    allowed.push(r.method.clone());
                    if r.method == Method::GET {
                        allowed.push(Method::HEAD);
                    }
                }
            }
        }
        if allowed.is_empty() {
            Lookup::NotFound
        } else {
            Lookup::MethodNotAllowed(allowed)
        }
    }
}

fn route(rpc: &MethodDescriptor, b: &annotations::Binding) -> Result<Route, String> {
    let name = rpc.full_name();
    let method = Method::from_bytes(b.http_method.as_bytes())
        .map_err(|_| format!("{name}: {:?} is not an HTTP method", b.http_method))?;
    let template = Template::parse(&b.path).map_err(|e| format!("{name}: {e}"))?;
    let input = rpc.input();
    for var in template.variables() {
        let field = field_at(&input, var).ok_or_else(|| {
            format!(
                "{name}: the path variable {{{var}}} names no field of {}",
                input.full_name()
            )
        })?;
        if field.is_list() || field.is_map() || matches!(field.kind(), Kind::Message(_)) {
            return Err(format!(
                "{name}: the path variable {{{var}}} must be a scalar field"
            ));
        }
    }
    let body = match b.body.as_str() {
        "" => BodyRule::None,
        "*" => BodyRule::Whole,
        f => BodyRule::Field(
            input
                .get_field_by_name(f)
                .ok_or_else(|| format!("{name}: body {f:?} names no field"))?,
        ),
    };
    let response_body = match b.response_body.as_str() {
        "" => None,
        f => Some(
            rpc.output()
                .get_field_by_name(f)
                .ok_or_else(|| format!("{name}: response_body {f:?} names no field"))?,
        ),
    };
    let grpc_path = PathAndQuery::try_from(format!(
        "/{}/{}",
        rpc.parent_service().full_name(),
        rpc.name()
    ))
    .map_err(|e| format!("{name}: {e}"))?;
    Ok(Route {
        method,
        template,
        body,
        response_body,
        rpc: rpc.clone(),
        grpc_path,
    })
}
