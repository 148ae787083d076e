// k6 load script for users who run k6 (the project does not install or vendor k6).
// Non-streaming chat completions against a Tollgate (or any OpenAI-compatible) endpoint.
//   k6 run -e BASE=http://127.0.0.1:8080 -e MODEL=gpt-4o-mini -e VUS=32 -e DURATION=30s loadtest/k6/chat.js
import http from 'k6/http';
import { check } from 'k6';

const BASE = __ENV.BASE || 'http://127.0.0.1:8080';
const MODEL = __ENV.MODEL || 'gpt-4o-mini';
const KEY = __ENV.API_KEY || '';

export const options = {
  vus: Number(__ENV.VUS || 32),
  duration: __ENV.DURATION || '30s',
  thresholds: { http_req_failed: ['rate<0.01'] },
};

const body = JSON.stringify({
  model: MODEL,
  messages: [{ role: 'user', content: 'Say hello in three words.' }],
});

export default function () {
  const headers = { 'content-type': 'application/json' };
  if (KEY) headers['authorization'] = `Bearer ${KEY}`;
  const res = http.post(`${BASE}/v1/chat/completions`, body, { headers });
  check(res, {
    'status 200': (r) => r.status === 200,
    'has usage': (r) => r.json('usage.total_tokens') > 0,
  });
}
