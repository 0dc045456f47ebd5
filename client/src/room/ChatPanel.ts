// The case chat: messages in sequence order, deduplicated by id (a message arrives both as the
// ack of chat:send and as its broadcast, and again after a rejoin overlap), a collapsible panel
// with an unread count while collapsed, and a send box that reuses its clientId when a send is
// retried, so a lost ack never posts the message twice.
import { AckFailure } from './RoomClient';
import { formatTime, h, randomId, replaceChildren } from '../dom';
import type { PublicChatMessage } from '../../../src/protocol/chat';

export class ChatPanel {
  readonly element: HTMLElement;
  readonly #list = h('ol', { class: 'chat-list', attrs: { 'aria-live': 'polite' } });
  readonly #badge = h('span', { class: 'badge', hidden: true, attrs: { 'aria-label': 'unread messages' } });
  readonly #toggle: HTMLButtonElement;
  readonly #body: HTMLElement;
  readonly #input = h('textarea', { name: 'message', rows: 2, placeholder: 'Message', attrs: { 'aria-label': 'Message' } });
  readonly #error = h('p', { class: 'form-error', attrs: { role: 'alert' } });
  readonly #messages = new Map<string, PublicChatMessage>();
  #unread = 0;
  #collapsed = false;
  /** The clientId of the text in the box, kept across retries of the same text. */
  #pending: { text: string; clientId: string } | null = null;

  constructor(
    private readonly myUserId: string,
    private readonly send: (text: string, clientId: string) => Promise<PublicChatMessage>,
  ) {
    this.#toggle = h('button', { type: 'button', class: 'panel-toggle', attrs: { 'aria-expanded': 'true' } }, h('span', {}, 'Chat'), this.#badge);
    this.#toggle.addEventListener('click', () => this.setCollapsed(!this.#collapsed));
    const submit = h('button', { type: 'submit' }, 'Send');
    const form = h('form', { class: 'chat-form' }, this.#input, submit);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      void this.#submit(submit);
    });
    this.#input.addEventListener('keydown', (e) => {
      // Enter sends; Shift+Enter makes a new line.
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    this.#body = h('div', { class: 'panel-body' }, this.#list, this.#error, form);
    this.element = h('section', { class: 'panel chat-panel' }, h('h2', {}, this.#toggle), this.#body);
  }

  get collapsed(): boolean {
    return this.#collapsed;
  }

  setCollapsed(collapsed: boolean): void {
    this.#collapsed = collapsed;
    this.#body.hidden = collapsed;
    this.#toggle.setAttribute('aria-expanded', String(!collapsed));
    this.element.classList.toggle('collapsed', collapsed);
    if (!collapsed) {
      this.#unread = 0;
      this.#renderBadge();
      this.#scrollToEnd();
    }
  }

  /** Adds messages (any order, duplicates ignored); counts others' new ones while collapsed. */
  add(messages: PublicChatMessage[], countUnread = true): void {
    let added = false;
    for (const m of messages) {
      if (this.#messages.has(m.id)) continue;
      this.#messages.set(m.id, m);
      added = true;
      if (countUnread && this.#collapsed && m.userId !== this.myUserId) this.#unread++;
    }
    if (!added) return;
    this.#render();
    this.#renderBadge();
  }

  #render(): void {
    const sorted = [...this.#messages.values()].sort((a, b) => a.seq - b.seq);
    replaceChildren(
      this.#list,
      ...sorted.map((m) =>
        h(
          'li',
          { class: `chat-message${m.userId === this.myUserId ? ' mine' : ''}`, dataset: { seq: String(m.seq), messageId: m.id } },
          h('span', { class: 'chat-meta' }, h('strong', {}, m.userName), ' ', h('time', { dateTime: m.createdAt }, formatTime(m.createdAt))),
          h('span', { class: 'chat-text' }, m.text),
        ),
      ),
    );
    this.#scrollToEnd();
  }

  #renderBadge(): void {
    this.#badge.hidden = this.#unread === 0;
    this.#badge.textContent = this.#unread > 99 ? '99+' : String(this.#unread);
  }

  #scrollToEnd(): void {
    if (!this.#collapsed) this.#list.scrollTop = this.#list.scrollHeight;
  }

  async #submit(button: HTMLButtonElement): Promise<void> {
    const text = this.#input.value.trim();
    if (!text) return;
    if (this.#pending?.text !== text) this.#pending = { text, clientId: randomId() };
    this.#error.textContent = '';
    button.disabled = true;
    try {
      const message = await this.send(text, this.#pending.clientId);
      this.#pending = null;
      if (this.#input.value.trim() === text) this.#input.value = '';
      this.add([message], false);
    } catch (err) {
      this.#error.textContent = err instanceof AckFailure ? err.message : 'The message could not be sent. Try again.';
    } finally {
      button.disabled = false;
      this.#input.focus();
    }
  }
}
