//! `switchyard.v1.TokenService`: converts, calls `auth::tokens`, converts.

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::status::OrStatus;
use super::{
    convert::{page, timestamp},
    principal,
};
use switchyard_api::v1::{token_service_server, *};
use switchyard_core::{
    error::Error,
    token::{TokenInfo, TokenService},
};

/// The TokenService implementation.
#[derive(Debug, Clone)]
pub struct TokenApi {
    tokens: TokenService,
}

impl TokenApi {
    /// Creates the service over the token use cases.
    pub fn new(tokens: TokenService) -> Self {
        TokenApi { tokens }
    }
}

/// Converts a stored token to its message.
fn to_proto(t: &TokenInfo) -> Token {
    Token {
        name: t.name.clone(),
        scope: t.scope.to_string(),
        created_by: t.created_by.clone(),
        create_time: Some(timestamp(t.created_at_us)),
        expire_time: t.expires_at_us.map(timestamp),
    }
}

/// A lifetime as sent: none when unset; negative is refused.
fn lifetime(d: Option<pbjson_types::Duration>) -> Result<Option<Duration>, Error> {
    let Some(d) = d else { return Ok(None) };
    match (u64::try_from(d.seconds), u32::try_from(d.nanos)) {
        (Ok(s), Ok(n)) if n < 1_000_000_000 => Ok(Some(Duration::new(s, n))),
        _ => Err(Error::invalid_argument(
            "lifetime",
            "must be at least one second and at most ten years",
        )),
    }
}

#[tonic::async_trait]
impl token_service_server::TokenService for TokenApi {
    async fn create_token(
        &self,
        req: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let p = principal(&req)?.clone();
        let r = req.into_inner();
        let lifetime = lifetime(r.lifetime).or_status()?;
        let (token, secret) = self
            .tokens
            .create(&p, &r.name, &r.scope, lifetime)
            .await
            .or_status()?;
        Ok(Response::new(CreateTokenResponse {
            token: Some(to_proto(&token)),
            secret,
        }))
    }

    async fn list_tokens(
        &self,
        req: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        let r = req.get_ref();
        let page = self
            .tokens
            .list(principal(&req)?, &page(r.page_size, &r.page_token))
            .await
            .or_status()?;
        Ok(Response::new(ListTokensResponse {
            tokens: page.items.iter().map(to_proto).collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn get_caller(
        &self,
        req: Request<GetCallerRequest>,
    ) -> Result<Response<GetCallerResponse>, Status> {
        let (name, scope) = self.tokens.caller(principal(&req)?);
        Ok(Response::new(GetCallerResponse {
            name,
            scope: scope.to_string(),
        }))
    }

    async fn revoke_token(
        &self,
        req: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        self.tokens
            .revoke(principal(&req)?, &req.get_ref().name)
            .await
            .or_status()?;
        Ok(Response::new(RevokeTokenResponse {}))
    }
}
