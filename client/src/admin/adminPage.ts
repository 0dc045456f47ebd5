// The site admin's pages: one shell with a section navigation (users, site policy, audit trail,
// usage) and the chosen section below it. Loaded as its own chunk: most people never see it.
import type { AppContext, View } from '../context';
import { h } from '../dom';
import { auditView } from './auditView';
import { policyView } from './policyView';
import { usageView } from './usageView';
import { usersView } from './usersView';

export const ADMIN_SECTIONS = {
  users: { title: 'Users', view: usersView },
  policy: { title: 'Site policy', view: policyView },
  audit: { title: 'Audit trail', view: auditView },
  usage: { title: 'Usage', view: usageView },
} as const;

export type AdminSection = keyof typeof ADMIN_SECTIONS;

export function isAdminSection(name: string): name is AdminSection {
  return Object.hasOwn(ADMIN_SECTIONS, name);
}

export function adminPageView(ctx: AppContext, section: AdminSection): View {
  const { title, view } = ADMIN_SECTIONS[section];
  ctx.setTitle(`${title} · Administration`);
  const inner = view(ctx);
  const nav = h(
    'nav',
    { class: 'admin-nav', attrs: { 'aria-label': 'Administration' } },
    ...Object.entries(ADMIN_SECTIONS).map(([name, s]) =>
      h('a', { href: `/admin/${name}`, dataset: { link: '' }, attrs: name === section ? { 'aria-current': 'page' } : {} }, s.title),
    ),
  );
  const element = h('main', { class: 'page admin-page' }, h('div', { class: 'page-title' }, h('h1', {}, title)), nav, inner.element);
  return { element, dispose: () => inner.dispose?.() };
}
