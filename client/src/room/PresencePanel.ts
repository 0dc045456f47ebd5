// Who is in the case room (one line per person, however many tabs they have open), whether each
// is active or idle, who presents, and the presenter controls: take (clinicians and site admins),
// release, and hand over to someone in the room.
import { colourFor, h, replaceChildren } from '../dom';
import { ROLE_LABEL } from '../labels';
import type { Role } from '../../../src/protocol/identity';
import type { Member, Presenter } from '../../../src/protocol/realtime';

/** Roles the server lets take the presenter role themselves (src/realtime/server.ts). */
const PRESENTER_ROLES: readonly Role[] = ['clinician', 'site_admin'];

export interface PresenterActions {
  take(): void;
  release(): void;
  handover(userId: string): void;
}

interface Person {
  userId: string;
  name: string;
  role: Role;
  active: boolean;
}

export class PresencePanel {
  readonly element: HTMLElement;
  readonly #controls = h('div', { class: 'presenter-controls' });
  readonly #list = h('ul', { class: 'presence-list' });

  constructor(
    private readonly me: { userId: string; role: Role },
    private readonly actions: PresenterActions,
  ) {
    this.element = h('section', { class: 'panel presence-panel' }, h('h2', {}, 'In this room'), this.#controls, this.#list);
  }

  render(members: Iterable<Member>, presenter: Presenter | null): void {
    const people = new Map<string, Person>();
    for (const m of members) {
      const known = people.get(m.userId);
      if (known) known.active ||= m.state === 'active';
      else people.set(m.userId, { userId: m.userId, name: m.name, role: m.role, active: m.state === 'active' });
    }
    const iPresent = presenter?.userId === this.me.userId;
    const sorted = [...people.values()].sort((a, b) => (a.userId === this.me.userId ? -1 : b.userId === this.me.userId ? 1 : a.name.localeCompare(b.name)));
    replaceChildren(
      this.#list,
      ...sorted.map((p) => {
        const dot = h('span', { class: 'presence-dot' });
        dot.style.backgroundColor = colourFor(p.userId);
        return h(
          'li',
          { class: `presence-item ${p.active ? 'active' : 'idle'}`, dataset: { userId: p.userId } },
          dot,
          h(
            'span',
            { class: 'presence-who' },
            h('span', { class: 'presence-name' }, p.name, p.userId === this.me.userId ? ' (you)' : ''),
            h('span', { class: 'presence-meta' }, `${ROLE_LABEL[p.role]} · ${p.active ? 'active' : 'idle'}`),
          ),
          presenter?.userId === p.userId ? h('span', { class: 'tag presenting' }, 'presenting') : null,
          iPresent && p.userId !== this.me.userId
            ? h('button', { type: 'button', class: 'small', on: { click: () => this.actions.handover(p.userId) } }, 'Hand over')
            : null,
        );
      }),
    );
    let controls: (HTMLElement | string)[];
    if (iPresent) {
      controls = [h('span', {}, 'You are presenting.'), h('button', { type: 'button', on: { click: () => this.actions.release() } }, 'Stop presenting')];
    } else if (PRESENTER_ROLES.includes(this.me.role)) {
      controls = [h('button', { type: 'button', class: 'primary', on: { click: () => this.actions.take() } }, presenter ? `Take over from ${presenter.name}` : 'Present')];
    } else {
      controls = [h('span', { class: 'muted' }, presenter ? `${presenter.name} is presenting.` : 'A clinician can present to the room.')];
    }
    replaceChildren(this.#controls, ...controls);
  }
}
