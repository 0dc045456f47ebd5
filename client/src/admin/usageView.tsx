// Site admin: usage statistics by month (counts only, from the audit trail). Summary figures,
// two bar charts drawn as plain SVG (no chart library: a few rectangles do not justify one), and
// the same numbers as a table, which is also what a screen reader reads.
import type { TargetedSubmitEvent } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { describeError } from '../api';
import type { AppContext } from '../context';
import { keysOf, ROLE_LABEL } from '../labels';
import type { UsageMonth, UsageReport } from '../../../src/protocol/governance';
import type { Role } from '../../../src/protocol/identity';
import { useAlive } from './hooks';

type Metric = Exclude<keyof UsageMonth, 'month' | 'materialsByType'>;

const METRIC_LABEL: Record<Metric, string> = {
  activeUsers: 'Active users',
  logins: 'Sign-ins',
  failedLogins: 'Failed sign-ins',
  casesCreated: 'Cases created',
  materialsUploaded: 'Images uploaded',
  roomJoins: 'Room joins',
  consultations: 'Consultations',
  followUps: 'Video follow-ups',
  mediaMinutes: 'Video minutes',
};

/** Series colours with at least 3:1 contrast against white (WCAG non-text contrast). */
const COLOURS = ['#1565c0', '#c2185b', '#2e7d32'];

const CHARTS: { title: string; metrics: Metric[] }[] = [
  { title: 'Sign-ins and active users', metrics: ['logins', 'activeUsers', 'failedLogins'] },
  { title: 'Cases, images and consultations', metrics: ['casesCreated', 'materialsUploaded', 'consultations'] },
];

function monthValue(offset: number): string {
  const d = new Date();
  d.setUTCDate(1);
  d.setUTCMonth(d.getUTCMonth() + offset);
  return d.toISOString().slice(0, 7);
}

function monthLabel(month: string): string {
  const [y, m] = month.split('-').map(Number);
  return new Date(Date.UTC(y!, m! - 1, 1)).toLocaleDateString([], { month: 'short', year: '2-digit', timeZone: 'UTC' });
}

export function UsageView({ ctx }: { ctx: AppContext }) {
  const [from, setFrom] = useState(() => monthValue(-11));
  const [to, setTo] = useState(() => monthValue(0));
  const [status, setStatus] = useState('');
  const [report, setReport] = useState<UsageReport | null>(null);
  const alive = useAlive();

  const load = async () => {
    setStatus('Loading…');
    try {
      const answer = await ctx.api.get<UsageReport>(`/api/admin/usage?${new URLSearchParams({ from, to })}`);
      if (!alive.current) return;
      setStatus(`${answer.months.length} month${answer.months.length === 1 ? '' : 's'}, ${answer.from} to ${answer.to}.`);
      setReport(answer);
    } catch (err) {
      if (alive.current) setStatus(describeError(err));
    }
  };
  useEffect(() => void load(), [ctx]);
  const submit = (e: TargetedSubmitEvent<HTMLFormElement>) => {
    e.preventDefault();
    void load();
  };

  return (
    <div class="admin-usage">
      <form class="panel inline-form usage-range" aria-label="Months" onSubmit={submit}>
        <label for="usage-from" class="field-label">
          From
        </label>
        <input type="month" id="usage-from" name="from" required value={from} onInput={(e) => setFrom(e.currentTarget.value)} />
        <label for="usage-to" class="field-label">
          To
        </label>
        <input type="month" id="usage-to" name="to" required value={to} onInput={(e) => setTo(e.currentTarget.value)} />
        <button type="submit" class="primary">
          Show
        </button>
      </form>
      <p class="list-summary" role="status">
        {status}
      </p>
      <div class="usage-content">{report ? <Report report={report} /> : null}</div>
    </div>
  );
}

function Figure({ label, value, note = '' }: { label: string; value: number | string; note?: string }) {
  return (
    <div class="figure">
      <span class="figure-value">{String(value)}</span>
      <span class="figure-label">{label}</span>
      {note ? <span class="figure-note">{note}</span> : null}
    </div>
  );
}

function Report({ report }: { report: UsageReport }) {
  const byRole = keysOf(ROLE_LABEL)
    .map((r: Role) => `${ROLE_LABEL[r]} ${report.users.byRole[r] ?? 0}`)
    .join(' · ');
  const t = report.totals;
  const metrics = keysOf(METRIC_LABEL);
  return (
    <>
      <section class="figures" aria-label="Totals">
        <Figure label="Users" value={report.users.total} note={byRole} />
        <Figure label="Access stopped" value={report.users.stopped} />
        <Figure label="Locked now" value={report.users.locked} />
        <Figure label="Cases held" value={report.casesHeld} />
        <Figure label="Sign-ins" value={t.logins} note={`${t.failedLogins} failed`} />
        <Figure label="Consultations" value={t.consultations} />
        <Figure label="Video minutes" value={t.mediaMinutes} />
      </section>
      <div class="charts">
        {CHARTS.map((c, i) => (
          <section key={c.title} class="panel chart-panel">
            <h2 id={`chart-${i}`}>{c.title}</h2>
            <BarChart months={report.months} metrics={c.metrics} labelledBy={`chart-${i}`} />
            <Legend metrics={c.metrics} />
          </section>
        ))}
      </div>
      <div class="table-wrap">
        <table class="case-table usage-table">
          <caption>Monthly figures</caption>
          <thead>
            <tr>
              <th scope="col">Month</th>
              {metrics.map((m) => (
                <th key={m} scope="col">
                  {METRIC_LABEL[m]}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {report.months.map((m) => (
              <tr key={m.month}>
                <th scope="row">{monthLabel(m.month)}</th>
                {metrics.map((k) => (
                  <td key={k}>{String(m[k])}</td>
                ))}
              </tr>
            ))}
            <tr class="totals">
              <th scope="row">Total</th>
              {metrics.map((k) => (
                <td key={k}>{String(t[k])}</td>
              ))}
            </tr>
          </tbody>
        </table>
      </div>
    </>
  );
}

function Legend({ metrics }: { metrics: Metric[] }) {
  return (
    <ul class="legend">
      {metrics.map((m, i) => (
        <li key={m}>
          {/* The colour is data (it matches the bars), set through CSSOM: no inline style attribute for the CSP. */}
          <span class="legend-key" aria-hidden="true" style={{ backgroundColor: COLOURS[i] }} />
          {METRIC_LABEL[m]}
        </li>
      ))}
    </ul>
  );
}

/** Grouped bars, one group per month; the numbers are in the table below (the chart is a picture of them). */
function BarChart({ months, metrics, labelledBy }: { months: UsageMonth[]; metrics: Metric[]; labelledBy: string }) {
  const width = 640;
  const height = 220;
  const left = 36;
  const bottom = 28;
  const top = 10;
  const max = Math.max(1, ...months.flatMap((m) => metrics.map((k) => m[k])));
  const step = niceStep(max);
  const scaleMax = Math.ceil(max / step) * step;
  const plotH = height - top - bottom;
  const group = (width - left) / Math.max(1, months.length);
  const bar = Math.max(2, Math.min(18, (group - 6) / metrics.length));
  const ticks: number[] = [];
  for (let v = 0; v <= scaleMax; v += step) ticks.push(v);
  return (
    <svg viewBox={`0 0 ${width} ${height}`} class="bar-chart" role="img" aria-labelledby={labelledBy}>
      {ticks.map((v) => {
        const y = top + plotH - (v / scaleMax) * plotH;
        return (
          <g key={v}>
            <line x1={left} x2={width} y1={y} y2={y} stroke="#d8dee5" stroke-width={1} />
            <text x={left - 6} y={y + 4} text-anchor="end" class="chart-tick">
              {String(v)}
            </text>
          </g>
        );
      })}
      {months.map((m, i) => {
        const x0 = left + i * group + (group - bar * metrics.length) / 2;
        return (
          <g key={m.month}>
            {metrics.map((k, j) => {
              const hgt = (m[k] / scaleMax) * plotH;
              return (
                <rect key={k} x={x0 + j * bar} y={top + plotH - hgt} width={bar - 1} height={Math.max(0, hgt)} fill={COLOURS[j]}>
                  <title>{`${monthLabel(m.month)}: ${METRIC_LABEL[k]} ${m[k]}`}</title>
                </rect>
              );
            })}
            <text x={left + i * group + group / 2} y={height - 8} text-anchor="middle" class="chart-tick">
              {monthLabel(m.month)}
            </text>
          </g>
        );
      })}
    </svg>
  );
}

/** 1, 2 or 5 times a power of ten, giving about four grid lines. */
function niceStep(max: number): number {
  const rough = max / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  for (const m of [1, 2, 5, 10]) if (m * power >= rough) return Math.max(1, m * power);
  return Math.max(1, 10 * power);
}
