// First start with an empty store: a demo site, its site admin, a clinician and a pathologist,
// each with a one-time password that must be changed at first login, and a demo case whose
// synthetic 20480 x 20480 slide converts in the background. The passwords are
// returned to main.ts, which prints them once to the console (never to the log).
import type { CaseService } from '../cases/service';
import type { Role } from '../protocol/identity';
import { DEMO_SLIDE_SIZE } from './demoSlide';
import type { IdentityService } from '../identity/service';
import type { Store } from '../store/types';

export interface DemoAccount {
  email: string;
  role: Role;
  oneTimePassword: string;
}

export const DEMO_SITE_NAME = 'Demo Hospital';
const SYSTEM_CONTEXT = { ip: null, userAgent: 'first-start' };

export async function seedIfEmpty(
  store: Store,
  identity: IdentityService,
  cases: CaseService,
  options: { demoSlide: boolean },
): Promise<DemoAccount[] | null> {
  if ((await store.sites.list()).length > 0) return null;
  const site = await identity.createSite(DEMO_SITE_NAME);
  const people: { email: string; name: string; role: Role }[] = [
    { email: 'admin@demo.local', name: 'Demo Site Admin', role: 'site_admin' },
    { email: 'clinician@demo.local', name: 'Demo Clinician', role: 'clinician' },
    { email: 'pathologist@demo.local', name: 'Demo Pathologist', role: 'pathologist' },
  ];
  const accounts: DemoAccount[] = [];
  for (const p of people) {
    const { oneTimePassword } = await identity.createUser(null, SYSTEM_CONTEXT, { siteId: site.id, ...p });
    accounts.push({ email: p.email, role: p.role, oneTimePassword });
  }
  await cases.createDemoCase(site.id, options.demoSlide ? { kind: 'demo', size: DEMO_SLIDE_SIZE } : null, 'synthetic-breast-core-HE.svs');
  return accounts;
}
