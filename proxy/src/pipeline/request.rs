//! The request's own stages, in the order the gateway runs them:
//!
//! 1. [`open`]: classify the endpoint, authenticate the caller, answer local endpoints;
//! 2. (the gateway reads the body)
//! 3. [`parse`]: the body parsed once into a view, its model routed;
//! 4. [`admit`]: allow-lists, parameter rules, the prompt counted, quotas and rate limits, all
//!    booked in the request's [`Ledger`];
//! 5. the cache lookup plugs in here (a hit answers);
//! 6. the input guardrails plug in here (block, mask, log);
//! 7. the gateway plans the attempts ([`AttemptPlan`](super::attempts::AttemptPlan)) and
//!    forwards, the answer passing through the [`response`](super::response) chain.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;

use super::admit::rate_limits::Demand;
use super::admit::{Admission, Ledger, RequestFacts};
use super::auth::{self, Identified};
use super::body::{self, Edit, RequestView};
use super::endpoint::{classify, Endpoint};
use super::head::{self, HeadLimits};
use super::{params, tokens, Answer, Step};
use crate::api_keys::KeyRegistry;
use crate::config::search::Trigger;
use crate::config::{Route, Snapshot};
use crate::context::{Caller, ModelStage, RequestCtx};
use crate::error::ApiError;
use crate::live::Live;

/// The request as the stages see it: read off the server's request header once, plain types.
pub struct Incoming<'a> {
    pub method: &'a http::Method,
    /// Path and query are read from it only by the stages that need them.
    pub uri: &'a http::Uri,
    pub headers: &'a HeaderMap,
    /// The TCP peer, asked for its address only when a rate limit keys by client IP.
    pub peer: &'a (dyn Peer + Sync),
}

/// The other end of the client connection.
pub trait Peer {
    fn ip(&self) -> Option<IpAddr>;
}

/// A request for a proxied endpoint, from a caller who may call it.
pub struct Opened {
    pub endpoint: Endpoint,
    /// `None`: the gateway has no consumers (open API).
    pub caller: Option<Identified>,
}

/// Stage 1: the head within limits, which endpoint, who is calling, and the local endpoints'
/// answers (`ready`: the gateway is not draining).
pub fn open(
    snapshot: &Snapshot,
    keys: &KeyRegistry,
    ready: bool,
    limits: &HeadLimits,
    req: &Incoming<'_>,
    ctx: &mut RequestCtx,
) -> Step<Opened> {
    head::check(limits, req.uri, req.headers)?;
    let endpoint = classify(req.method.as_str(), req.uri.path())?;
    ctx.endpoint = Some(endpoint);
    let caller = match endpoint {
        Endpoint::Health => return Err(Answer::Local(Bytes::from_static(b"{\"status\":\"ok\"}"))),
        Endpoint::Ready if !ready => return Err(ApiError::shutting_down().into()),
        Endpoint::Ready => {
            let body = format!("{{\"status\":\"ready\",\"config_version\":{}}}", snapshot.version);
            return Err(Answer::Local(Bytes::from(body)));
        }
        _ => identify(snapshot, keys, endpoint, req.headers, ctx)?,
    };
    if endpoint == Endpoint::Models {
        let body = caller.map_or_else(|| snapshot.models_body.clone(), |c| c.consumer.models_body.clone());
        return Err(Answer::Local(body));
    }
    Ok(Opened { endpoint, caller })
}

/// Check the caller's key and its right to call `endpoint`; records the caller in `ctx`.
fn identify(
    snapshot: &Snapshot,
    keys: &KeyRegistry,
    endpoint: Endpoint,
    headers: &HeaderMap,
    ctx: &mut RequestCtx,
) -> Step<Option<Identified>> {
    let entry = auth::authenticate(snapshot.consumers.as_ref(), keys, headers)
        .inspect_err(|_| ctx.caller = Caller::Unidentified)?;
    let Some(entry) = entry else { return Ok(None) };
    ctx.caller = Caller::Consumer {
        consumer: entry.consumer.clone(),
        key_id: entry.key_id.clone(),
    };
    auth::authorize_endpoint(&entry, endpoint)?;
    Ok(Some(entry))
}

/// A body parsed, its model routed.
pub struct Parsed {
    pub view: RequestView,
    pub route: Arc<Route>,
    /// The model was named with the search suffix (`qwen:online`); `view.model` is without it.
    pub online: bool,
}

/// Stage 3: parse the body once, check its shape for the endpoint, and find the route of the model it names.
pub fn parse(snapshot: &Snapshot, opened: &Opened, body: &Bytes, ctx: &mut RequestCtx) -> Step<Parsed> {
    ctx.prompt.bytes_in = body.len() as u64;
    let mut view = body::parse(body, opened.endpoint)?;
    ctx.prompt.stream = view.stream;
    ctx.prompt.user = view.user.clone();
    let mut online = false;
    let mut route = snapshot.route(&view.model);
    if route.is_none() {
        // `model:online` asks for search on `model`, when this caller may search with it.
        let consumer = opened.caller.as_ref().map(|c| c.consumer.name.as_str());
        let base = snapshot.search.as_ref().and_then(|s| {
            let base = view
                .model
                .strip_suffix(s.suffix.as_str())
                .filter(|_| !s.suffix.is_empty())?;
            let r = snapshot
                .route(base)
                .filter(|_| s.trigger_for(base, consumer) != Trigger::Never)?;
            Some((base.to_owned(), r))
        });
        if let Some((base, r)) = base {
            view.model = base;
            route = Some(r);
            online = true;
        }
    }
    match route {
        Some(route) => {
            // From here on a refusal (allow-list, parameter rules, quota, limit) is logged and
            // counted under the model it was for.
            ctx.model = ModelStage::Routed {
                route: route.clone(),
                target: None,
            };
            Ok(Parsed {
                route: route.clone(),
                view,
                online,
            })
        }
        None => {
            ctx.model = ModelStage::unknown(&view.model);
            Err(ApiError::unknown_model(&view.model).into())
        }
    }
}

/// A request admitted: what is sent upstream, before each target's model rewrite.
pub struct Admitted {
    pub route: Arc<Route>,
    pub view: RequestView,
    /// The caller's parameter policy for `route`, as splices; then those of later stages
    /// (masks of the input guard).
    pub edits: Vec<Edit>,
    /// How many of `edits` are the parameter policy's (the rest apply whatever the route).
    pub param_edits: usize,
    /// Ask upstream for usage the client did not ask for (and strip it from the stream).
    pub force_usage: bool,
    /// The model was named with the search suffix.
    pub online: bool,
}

/// Stage 4: may this caller send this request now? Model allow-list and parameter rules, then
/// the prompt counted, then quotas and rate limits, booked in `ledger`.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site; the stage's inputs, spelled out"
)]
pub async fn admit(
    admission: &Admission,
    live: &Live,
    opened: &Opened,
    parsed: Parsed,
    body: &Bytes,
    req: &Incoming<'_>,
    ctx: &mut RequestCtx,
    ledger: &mut Ledger,
) -> Step<Admitted> {
    let Parsed { view, route, online } = parsed;
    let mut edits = Vec::new();
    if let Some(caller) = &opened.caller {
        if caller.consumer.log_prompts {
            ctx.prompt.logged_body = Some(body.clone());
        }
        edits = auth::authorize_route(caller, &route)
            .and_then(|()| params::apply(body, &view.members, &caller.consumer.params.for_model(&view.model)))?;
        if !caller.consumer.quotas.is_empty() {
            // Boxed (here and for limits): features a request may not use keep their state out
            // of every request's future, which is moved as a whole.
            let rate_headers = &mut ctx.answer.rate_headers;
            Box::pin(admission.quotas(caller, view.user.as_deref(), req.headers, ledger, rate_headers)).await?;
        }
    }
    ctx.prompt.counted = Some(tokens::count_prompt(
        body,
        &view,
        route.counter.as_ref(),
        &admission.estimator,
    ));
    if !live.limits.is_empty() {
        let caller = opened.caller.as_ref();
        let max_tokens = match (opened.endpoint, caller) {
            (Endpoint::Embeddings, _) => Some(0),
            (_, Some(c)) => params::effective_max_tokens(&c.consumer.params.for_model(&view.model), view.max_tokens),
            (_, None) => view.max_tokens,
        };
        let demand = Demand {
            prompt_tokens: ctx.prompt.counted.map_or(0, |c| c.tokens() as u64),
            max_tokens,
            choices: view.choices,
        };
        let facts = RequestFacts {
            headers: req.headers,
            query: req.uri.query(),
            peer: req.peer,
        };
        let rate_headers = &mut ctx.answer.rate_headers;
        let user = view.user.as_deref();
        let limited = admission.rate_limits(live, caller, &view.model, user, &facts, demand, ledger, rate_headers);
        Box::pin(limited).await?;
    }
    let force_usage = opened.endpoint != Endpoint::Embeddings && body::needs_forced_usage(&view);
    Ok(Admitted {
        route,
        view,
        param_edits: edits.len(),
        edits,
        force_usage,
        online,
    })
}
