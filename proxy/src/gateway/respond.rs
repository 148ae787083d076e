//! Responses the gateway writes itself: local endpoints and errors.

use bytes::Bytes;
use http::StatusCode;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::context::{Outcome, RequestCtx};
use crate::error::ApiError;

/// Write a complete JSON response.
pub async fn json(session: &mut Session, ctx: &mut RequestCtx, status: StatusCode, body: Bytes) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header("x-request-id", ctx.request_id.as_str())?;
    for (name, value) in &ctx.extra_headers {
        resp.insert_header(name.clone(), value.clone())?;
    }
    ctx.status = status.as_u16();
    session.write_response_header(Box::new(resp), false).await?;
    ctx.bytes_out += body.len() as u64;
    session.write_response_body(Some(body), true).await
}

/// Answer `err` to the client. Failing to write means the client is gone; nothing else to do.
pub async fn error(session: &mut Session, ctx: &mut RequestCtx, err: ApiError) {
    ctx.error_code = Some(err.code);
    ctx.outcome = Outcome::Refused;
    if json(session, ctx, err.status, err.body()).await.is_err() {
        ctx.outcome = Outcome::ClientGone;
    }
}
