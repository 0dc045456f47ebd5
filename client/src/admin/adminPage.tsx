// The site admin's pages: one shell with a section navigation (users, site policy, audit trail,
// usage) and the chosen section below it. Loaded as its own chunk: most people never see it.
// The shell and its sections are Preact components (docs/client.md, "UI library"); the shell
// keeps the View API main.ts expects: an element of its own, and dispose() unmounts the tree,
// which ends every section's pending work.
import { render } from 'preact';
import type { AppContext, View } from '../context';
import { keysOf } from '../labels';
import { AuditView } from './auditView';
import { PolicyView } from './policyView';
import { UsageView } from './usageView';
import { UsersView } from './usersView';

export const ADMIN_SECTIONS = {
  users: { title: 'Users', Section: UsersView },
  policy: { title: 'Site policy', Section: PolicyView },
  audit: { title: 'Audit trail', Section: AuditView },
  usage: { title: 'Usage', Section: UsageView },
} as const;

export type AdminSection = keyof typeof ADMIN_SECTIONS;

export function isAdminSection(name: string): name is AdminSection {
  return Object.hasOwn(ADMIN_SECTIONS, name);
}

function AdminPage({ ctx, section }: { ctx: AppContext; section: AdminSection }) {
  const { title, Section } = ADMIN_SECTIONS[section];
  return (
    <>
      <div class="page-title">
        <h1>{title}</h1>
      </div>
      <nav class="admin-nav" aria-label="Administration">
        {keysOf(ADMIN_SECTIONS).map((name) => (
          <a key={name} href={`/admin/${name}`} data-link="" aria-current={name === section ? 'page' : undefined}>
            {ADMIN_SECTIONS[name].title}
          </a>
        ))}
      </nav>
      <Section ctx={ctx} />
    </>
  );
}

export function adminPageView(ctx: AppContext, section: AdminSection): View {
  ctx.setTitle(`${ADMIN_SECTIONS[section].title} · Administration`);
  const element = document.createElement('main');
  element.className = 'page admin-page';
  render(<AdminPage ctx={ctx} section={section} />, element);
  return { element, dispose: () => render(null, element) };
}
