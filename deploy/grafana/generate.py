#!/usr/bin/env python3
"""Writes deploy/grafana/dashboards/tollgate.json: the panels and their PromQL, kept here as data."""
import json
import os
R = "$__rate_interval"
panels = [
  ("Requests per second by model", 'sum by (model) (rate(tollgate_requests_total[%s]))' % R, "{{model}}", "reqps"),
  ("Share of requests answered with an error", 'sum(rate(tollgate_requests_total{status!~"2.."}[%s])) / sum(rate(tollgate_requests_total[%s]))' % (R, R), "errors", "percentunit"),
  ("Latency p50 / p95 / p99", ['histogram_quantile(%s, sum by (le) (rate(tollgate_request_duration_seconds_bucket[%s])))' % (q, R) for q in ("0.5", "0.95", "0.99")], ["p50", "p95", "p99"], "s"),
  ("Time to first token p95 by model", 'histogram_quantile(0.95, sum by (le, model) (rate(tollgate_ttft_seconds_bucket[%s])))' % R, "{{model}}", "s"),
  ("Tollgate's own overhead p50 / p99", ['histogram_quantile(%s, sum by (le) (rate(tollgate_overhead_seconds_bucket[%s])))' % (q, R) for q in ("0.5", "0.99")], ["p50", "p99"], "s"),
  ("Requests per second by consumer and status class", 'sum by (consumer, class) (rate(tollgate_consumer_requests_total[%s]))' % R, "{{consumer}} {{class}}", "reqps"),
  ("Requests per second by consumer and what answered (provider, fallback, cache, gateway)", 'sum by (consumer, source) (rate(tollgate_consumer_requests_total[%s]))' % R, "{{consumer}} {{source}}", "reqps"),
  ("Latency p95 by consumer", 'histogram_quantile(0.95, sum by (le, consumer) (rate(tollgate_consumer_request_duration_seconds_bucket[%s])))' % R, "{{consumer}}", "s"),
  ("Time to first token p95 by consumer", 'histogram_quantile(0.95, sum by (le, consumer) (rate(tollgate_consumer_ttft_seconds_bucket[%s])))' % R, "{{consumer}}", "s"),
  ("Tokens per second by consumer and kind", 'sum by (consumer, kind) (rate(tollgate_consumer_tokens_total[%s]))' % R, "{{consumer}} {{kind}}", "short"),
  ("Tokens per second by model and kind", 'sum by (model, kind) (rate(tollgate_tokens_total[%s]))' % R, "{{model}} {{kind}}", "short"),
  ("Cost in the last hour by consumer", 'sum by (consumer, currency) (increase(tollgate_cost_total[1h]))', "{{consumer}} {{currency}}", "short"),
  ("Cost in the last hour by model", 'sum by (model, currency) (increase(tollgate_cost_total[1h]))', "{{model}} {{currency}}", "short"),
  ("Cache hit ratio", 'sum(rate(tollgate_cache_lookups_total{outcome=~"hit|semantic-hit"}[%s])) / sum(rate(tollgate_cache_lookups_total{outcome!~"off|skipped"}[%s]))' % (R, R), "hits", "percentunit"),
  ("Rate limit rejections by rule and consumer", 'sum by (rule, consumer) (rate(tollgate_limit_rejections_total[%s]))' % R, "{{rule}} {{consumer}}", "reqps"),
  ("Quota rejections by quota and consumer", 'sum by (quota, consumer) (rate(tollgate_quota_rejections_total[%s]))' % R, "{{quota}} {{consumer}}", "reqps"),
  ("Security events by risk and action", 'sum by (risk, action) (rate(tollgate_guardrail_events_total[%s]))' % R, "{{risk}} {{action}}", "short"),
  ("Fallbacks by model pair", 'sum by (from, to) (rate(tollgate_fallbacks_total[%s]))' % R, "{{from}} → {{to}}", "reqps"),
  ("Requests per second by target and status", 'sum by (provider, target, status) (rate(tollgate_target_requests_total[%s]))' % R, "{{provider}}/{{target}} {{status}}", "reqps"),
  ("Latency p95 by target", 'histogram_quantile(0.95, sum by (le, provider, target) (rate(tollgate_target_request_duration_seconds_bucket[%s])))' % R, "{{provider}}/{{target}}", "s"),
  ("Upstream attempts by provider and outcome", 'sum by (provider, outcome) (rate(tollgate_upstream_attempts_total[%s]))' % R, "{{provider}} {{outcome}}", "reqps"),
  ("Config version serving", 'max(tollgate_config_version)', "version", "short"),
]
out = []
for i, (title, exprs, legends, unit) in enumerate(panels):
    if isinstance(exprs, str):
        exprs, legends = [exprs], [legends]
    out.append({
        "id": i + 1, "type": "timeseries", "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [{"refId": chr(65 + j), "expr": e, "legendFormat": l, "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                    for j, (e, l) in enumerate(zip(exprs, legends))],
    })
dash = {
  "uid": "tollgate", "title": "Tollgate", "tags": ["tollgate", "llm"], "timezone": "utc",
  "schemaVersion": 39, "version": 1, "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
  "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]},
  "panels": out,
}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboards", "tollgate.json"), "w") as f:
    json.dump(dash, f, indent=2, ensure_ascii=False)
    f.write("\n")
