//! Logins on the Flight SQL face: the handshake that turns user and password into a bearer token,
//! and the `authorization` header every later call carries. The rules themselves (who exists,
//! which tenant, which role) are [`tributary_auth`]'s; this file only reads and writes headers.

use std::pin::Pin;
use std::time::Duration;

use arrow_flight::{BasicAuth, HandshakeRequest, HandshakeResponse};
use futures::{Stream, StreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};
use tributary_auth::{Access, Credential, Directory};

use crate::error::status_of;

/// The header of credentials and tokens, as gRPC spells it.
pub const AUTHORIZATION: &str = "authorization";

/// What the handshake answers.
pub(crate) type HandshakeStream =
    Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>;

/// A request's `authorization` header, if any.
pub(crate) fn authorization<T>(request: &Request<T>) -> Result<Option<&str>, Status> {
    request
        .metadata()
        .get(AUTHORIZATION)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| Status::unauthenticated("the authorization header is not text"))
        })
        .transpose()
}

/// The caller of a request: `None` while no user exists (an open, loopback-only server).
pub(crate) async fn caller<T>(
    directory: &Directory,
    request: &Request<T>,
) -> Result<Option<Access>, Status> {
    directory
        .authenticate(authorization(request)?)
        .await
        .map_err(|e| status_of(e.into()))
}

/// The Flight SQL handshake: basic credentials in (the `authorization` header, as ADBC, JDBC and
/// pyarrow send them, or a `BasicAuth` message as payload), a bearer token out (header and
/// payload). A bearer token in is checked and answered back. While no user exists, everyone is
/// let in without a token.
pub(crate) async fn handshake(
    directory: &Directory,
    token_lifetime: Duration,
    request: Request<Streaming<HandshakeRequest>>,
) -> Result<Response<HandshakeStream>, Status> {
    let answer = |token: String| -> Result<Response<HandshakeStream>, Status> {
        let header = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|e| Status::internal(format!("cannot send the token: {e}")))?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.into_bytes().into(),
        };
        let mut response =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])) as HandshakeStream);
        response.metadata_mut().insert(AUTHORIZATION, header);
        Ok(response)
    };
    let open = if authorization(&request)?.is_some() {
        directory.is_open_now().await
    } else {
        directory.is_open().await
    };
    if open.map_err(|e| status_of(e.into()))? {
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        return Ok(Response::new(Box::pin(futures::stream::iter([Ok(reply)]))));
    }
    let (name, password) = match authorization(&request)? {
        Some(header) => match Credential::parse(header).map_err(|e| status_of(e.into()))? {
            Credential::Bearer(token) => {
                directory
                    .login_with_token(&token)
                    .await
                    .map_err(|e| status_of(e.into()))?;
                return answer(token);
            }
            Credential::Basic { name, password } => (name, password),
        },
        None => payload_credentials(request.into_inner()).await?,
    };
    let token = directory
        .login_for_token(&name, &password, token_lifetime)
        .await
        .map_err(|e| status_of(e.into()))?;
    answer(token)
}

/// Credentials sent as a `BasicAuth` message in the first handshake request.
async fn payload_credentials(
    mut requests: Streaming<HandshakeRequest>,
) -> Result<(String, String), Status> {
    let missing = || {
        Status::unauthenticated(
            "this server needs a login: send user and password (basic authorization header) \
             or a bearer token",
        )
    };
    let first = requests.next().await.ok_or_else(missing)??;
    let auth = BasicAuth::decode(first.payload).map_err(|_| missing())?;
    if auth.username.is_empty() {
        return Err(missing());
    }
    Ok((auth.username, auth.password))
}
