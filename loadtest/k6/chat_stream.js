// k6 load script for users who run k6 (the project does not install or vendor k6).
// Streaming chat completions: checks the stream ends with [DONE]; k6's http_req_waiting is TTFB.
//   k6 run -e BASE=http://127.0.0.1:8080 -e MODEL=gpt-4o-mini -e VUS=32 -e DURATION=30s loadtest/k6/chat_stream.js
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
  stream: true,
  messages: [{ role: 'user', content: 'Count to twenty.' }],
});

export default function () {
  const headers = { 'content-type': 'application/json', accept: 'text/event-stream' };
  if (KEY) headers['authorization'] = `Bearer ${KEY}`;
  const res = http.post(`${BASE}/v1/chat/completions`, body, { headers });
  check(res, {
    'status 200': (r) => r.status === 200,
    'complete stream': (r) => r.body.endsWith('data: [DONE]\n\n'),
  });
}
