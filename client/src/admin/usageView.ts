// Site admin: usage statistics by month (counts only, from the audit trail). Summary figures,
// two bar charts drawn as plain SVG (no chart library: a few rectangles do not justify one), and
// the same numbers as a table, which is also what a screen reader reads.
import { describeError } from '../api';
import type { AppContext, View } from '../context';
import { h, replaceChildren, svg } from '../dom';
import { keysOf, ROLE_LABEL } from '../labels';
import type { UsageMonth, UsageReport } from '../../../src/protocol/governance';
import type { Role } from '../../../src/protocol/identity';

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

export function usageView(ctx: AppContext): View {
  let disposed = false;
  const from = h('input', { type: 'month', id: 'usage-from', name: 'from', value: monthValue(-11), required: true });
  const to = h('input', { type: 'month', id: 'usage-to', name: 'to', value: monthValue(0), required: true });
  const status = h('p', { class: 'list-summary', attrs: { role: 'status' } });
  const content = h('div', { class: 'usage-content' });
  const form = h(
    'form',
    { class: 'panel inline-form usage-range', attrs: { 'aria-label': 'Months' } },
    h('label', { htmlFor: 'usage-from', class: 'field-label' }, 'From'),
    from,
    h('label', { htmlFor: 'usage-to', class: 'field-label' }, 'To'),
    to,
    h('button', { type: 'submit', class: 'primary' }, 'Show'),
  );
  const load = async () => {
    status.textContent = 'Loading…';
    try {
      const report = await ctx.api.get<UsageReport>(`/api/admin/usage?${new URLSearchParams({ from: from.value, to: to.value })}`);
      if (disposed) return;
      status.textContent = `${report.months.length} month${report.months.length === 1 ? '' : 's'}, ${report.from} to ${report.to}.`;
      replaceChildren(content, ...render(report));
    } catch (err) {
      if (!disposed) status.textContent = describeError(err);
    }
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void load();
  });
  void load();
  return {
    element: h('div', { class: 'admin-usage' }, form, status, content),
    dispose: () => {
      disposed = true;
    },
  };
}

function render(report: UsageReport): HTMLElement[] {
  const byRole = keysOf(ROLE_LABEL)
    .map((r: Role) => `${ROLE_LABEL[r]} ${report.users.byRole[r] ?? 0}`)
    .join(' · ');
  const figure = (label: string, value: number | string, note = '') =>
    h('div', { class: 'figure' }, h('span', { class: 'figure-value' }, String(value)), h('span', { class: 'figure-label' }, label), note ? h('span', { class: 'figure-note' }, note) : null);
  const t = report.totals;
  const summary = h(
    'section',
    { class: 'figures', attrs: { 'aria-label': 'Totals' } },
    figure('Users', report.users.total, byRole),
    figure('Access stopped', report.users.stopped),
    figure('Locked now', report.users.locked),
    figure('Cases held', report.casesHeld),
    figure('Sign-ins', t.logins, `${t.failedLogins} failed`),
    figure('Consultations', t.consultations),
    figure('Video minutes', t.mediaMinutes),
  );
  const charts = CHARTS.map((c, i) => h('section', { class: 'panel chart-panel' }, h('h2', { id: `chart-${i}` }, c.title), barChart(report.months, c.metrics, `chart-${i}`), legend(c.metrics)));
  const metrics = keysOf(METRIC_LABEL);
  const table = h(
    'table',
    { class: 'case-table usage-table' },
    h('caption', {}, 'Monthly figures'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Month'), ...metrics.map((m) => h('th', { scope: 'col' }, METRIC_LABEL[m])))),
    h(
      'tbody',
      {},
      ...report.months.map((m) => h('tr', {}, h('th', { scope: 'row' }, monthLabel(m.month)), ...metrics.map((k) => h('td', {}, String(m[k]))))),
      h('tr', { class: 'totals' }, h('th', { scope: 'row' }, 'Total'), ...metrics.map((k) => h('td', {}, String(t[k])))),
    ),
  );
  return [summary, h('div', { class: 'charts' }, ...charts), h('div', { class: 'table-wrap' }, table)];
}

function legend(metrics: Metric[]): HTMLElement {
  return h(
    'ul',
    { class: 'legend' },
    ...metrics.map((m, i) => {
      const key = h('span', { class: 'legend-key', attrs: { 'aria-hidden': 'true' } });
      key.style.backgroundColor = COLOURS[i]!;
      return h('li', {}, key, METRIC_LABEL[m]);
    }),
  );
}

/** Grouped bars, one group per month; the numbers are in the table below (the chart is a picture of them). */
function barChart(months: UsageMonth[], metrics: Metric[], labelledBy: string): SVGSVGElement {
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
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'bar-chart', role: 'img', 'aria-labelledby': labelledBy });
  for (let v = 0; v <= scaleMax; v += step) {
    const y = top + plotH - (v / scaleMax) * plotH;
    chart.append(svg('line', { x1: left, x2: width, y1: y, y2: y, stroke: '#d8dee5', 'stroke-width': 1 }));
    const tick = svg('text', { x: left - 6, y: y + 4, 'text-anchor': 'end', class: 'chart-tick' });
    tick.textContent = String(v);
    chart.append(tick);
  }
  months.forEach((m, i) => {
    const x0 = left + i * group + (group - bar * metrics.length) / 2;
    metrics.forEach((k, j) => {
      const hgt = (m[k] / scaleMax) * plotH;
      const rect = svg('rect', { x: x0 + j * bar, y: top + plotH - hgt, width: bar - 1, height: Math.max(0, hgt), fill: COLOURS[j]! });
      const title = svg('title');
      title.textContent = `${monthLabel(m.month)}: ${METRIC_LABEL[k]} ${m[k]}`;
      rect.append(title);
      chart.append(rect);
    });
    const label = svg('text', { x: left + i * group + group / 2, y: height - 8, 'text-anchor': 'middle', class: 'chart-tick' });
    label.textContent = monthLabel(m.month);
    chart.append(label);
  });
  return chart;
}

/** 1, 2 or 5 times a power of ten, giving about four grid lines. */
function niceStep(max: number): number {
  const rough = max / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  for (const m of [1, 2, 5, 10]) if (m * power >= rough) return Math.max(1, m * power);
  return Math.max(1, 10 * power);
}
