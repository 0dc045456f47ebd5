// What every view receives from the application shell: the API client, the signed-in user, and
// the navigation and sign-out actions. Views own their element and release everything in dispose().
import type { Api } from './api';
import type { MeResponse } from '../../src/protocol/identity';

export interface View {
  element: HTMLElement;
  /** Closes sockets, timers and listeners; called when the view is replaced. */
  dispose?(): void;
}

export interface AppContext {
  readonly api: Api;
  /** The signed-in user, or null on the sign-in page. */
  readonly me: MeResponse | null;
  navigate(path: string, options?: { replace?: boolean }): void;
  /** After sign-in or a finished pending step: the answer of the server decides what comes next. */
  signedIn(me: MeResponse, options?: { currentPassword?: string }): void;
  /** Ends the session here and shows the sign-in page with `notice`. */
  signOut(notice?: string): Promise<void>;
  /** The session ended on the server: show the sign-in page with `notice`, without calling it. */
  sessionEnded(notice: string): void;
  setTitle(title: string): void;
}
