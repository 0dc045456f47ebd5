// Prometheus metrics on their own port: request latencies by route pattern, login failures,
// lockouts, sockets and rooms, event-loop lag; no ids, e-mails or paths with ids in labels.
import http from 'node:http';
import net from 'node:net';
import { call, connect, startTestServer } from '../helpers/server';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function scrape(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get(`http://127.0.0.1:${port}/metrics`, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

test('metrics show traffic, failures and sockets without identifying anyone', async () => {
  const port = await freePort();
  const t = await startTestServer({ METRICS_PORT: String(port) });
  try {
    const { client, email } = await t.demoLogin('clinician');
    const caseId = (await client.post('/api/cases', { title: 'Metrics' }).expect(201)).body.case.id;
    await client.get(`/api/cases/${caseId}`).expect(200);
    await t.client().login(email, 'not the right password here').expect(401);
    const s = await connect(t.socket(client));
    await call(s, 'room:join', { caseId });
    const text = await scrape(port);
    s.disconnect();
    expect(text).toMatch(/http_request_duration_seconds_count\{method="GET",route="\/api\/cases\/:caseId",status="2xx"\} 1/);
    expect(text).toMatch(/login_failures_total 1/);
    expect(text).toMatch(/sockets_connected 1/);
    expect(text).toMatch(/case_rooms_open 1/);
    expect(text).toMatch(/socket_event_duration_seconds_count\{event="room:join",outcome="ok"\} 1/);
    expect(text).toMatch(/nodejs_eventloop_lag_seconds/);
    // The audit chains' length is the store's own count: every record written so far.
    const chains = await t.server.store.audit.listChains();
    let records = 0;
    for (const site of chains) records += (await t.server.store.audit.listChain(site, 0, 1_000_000)).length;
    const reported = Number(/^audit_chain_records (\d+)$/m.exec(text)?.[1]);
    expect(reported).toBeGreaterThan(5);
    expect(reported).toBeLessThanOrEqual(records);
    // One media worker runs on this test node; media objects are reported by kind.
    expect(text).toMatch(/media_objects\{kind="workers"\} 1/);
    expect(text).not.toContain(caseId);
    expect(text).not.toContain(email);
  } finally {
    await t.close();
  }
});
