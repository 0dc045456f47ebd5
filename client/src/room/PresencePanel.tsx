// Who is in the case room (one line per person, however many tabs they have open), whether each
// is active or idle, who presents, and the presenter controls: take (clinicians and site admins),
// release, and hand over to someone in the room.
//
// The class keeps the case page's imperative API (`render(members, presenter)`); a Preact
// component draws the room into `element` (docs/client.md, "UI library").
import { render as renderInto } from 'preact';
import { colourFor } from '../dom';
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

interface Props {
  me: { userId: string; role: Role };
  people: Person[];
  presenter: Presenter | null;
  actions: PresenterActions;
  /** False until the room's first state: no controls before the room says who presents. */
  joined: boolean;
}

function Controls({ me, presenter, actions }: Omit<Props, 'people' | 'joined'>) {
  if (presenter?.userId === me.userId) {
    return (
      <>
        <span>You are presenting.</span>
        <button type="button" onClick={() => actions.release()}>
          Stop presenting
        </button>
      </>
    );
  }
  if (PRESENTER_ROLES.includes(me.role)) {
    return (
      <button type="button" class="primary" onClick={() => actions.take()}>
        {presenter ? `Take over from ${presenter.name}` : 'Present'}
      </button>
    );
  }
  return <span class="muted">{presenter ? `${presenter.name} is presenting.` : 'A clinician can present to the room.'}</span>;
}

function Presence({ me, people, presenter, actions, joined }: Props) {
  const iPresent = presenter?.userId === me.userId;
  return (
    <>
      <h2>In this room</h2>
      <div class="presenter-controls">
        {joined ? <Controls me={me} presenter={presenter} actions={actions} /> : null}
      </div>
      <ul class="presence-list">
        {people.map((p) => (
          <li key={p.userId} class={`presence-item ${p.active ? 'active' : 'idle'}`} data-user-id={p.userId}>
            {/* A colour per person, computed: set through the CSSOM, which the CSP allows. */}
            <span class="presence-dot" style={{ backgroundColor: colourFor(p.userId) }} />
            <span class="presence-who">
              <span class="presence-name">
                {p.name}
                {p.userId === me.userId ? ' (you)' : ''}
              </span>
              <span class="presence-meta">{`${ROLE_LABEL[p.role]} · ${p.active ? 'active' : 'idle'}`}</span>
            </span>
            {presenter?.userId === p.userId ? <span class="tag presenting">presenting</span> : null}
            {iPresent && p.userId !== me.userId ? (
              <button type="button" class="small" onClick={() => actions.handover(p.userId)}>
                Hand over
              </button>
            ) : null}
          </li>
        ))}
      </ul>
    </>
  );
}

export class PresencePanel {
  readonly element: HTMLElement = document.createElement('section');

  constructor(
    private readonly me: { userId: string; role: Role },
    private readonly actions: PresenterActions,
  ) {
    this.element.className = 'panel presence-panel';
    renderInto(<Presence me={me} people={[]} presenter={null} actions={actions} joined={false} />, this.element);
  }

  render(members: Iterable<Member>, presenter: Presenter | null): void {
    const people = new Map<string, Person>();
    for (const m of members) {
      const known = people.get(m.userId);
      if (known) known.active ||= m.state === 'active';
      else people.set(m.userId, { userId: m.userId, name: m.name, role: m.role, active: m.state === 'active' });
    }
    const sorted = [...people.values()].sort((a, b) => (a.userId === this.me.userId ? -1 : b.userId === this.me.userId ? 1 : a.name.localeCompare(b.name)));
    renderInto(<Presence me={this.me} people={sorted} presenter={presenter} actions={this.actions} joined />, this.element);
  }
}
