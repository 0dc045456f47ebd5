// The case chat: messages in sequence order, deduplicated by id (a message arrives both as the
// ack of chat:send and as its broadcast, and again after a rejoin overlap), a collapsible panel
// with an unread count while collapsed, and a send box that reuses its clientId when a send is
// retried, so a lost ack never posts the message twice.
//
// The class keeps the case page's imperative API (add, setCollapsed) and the room state; a Preact
// component renders it into `element` (docs/client.md, "UI library"). The text being typed is the
// send box's own state, so a keystroke re-renders the box, not the whole message list.
import { createRef, render, type RefObject } from 'preact';
import { useRef, useState } from 'preact/hooks';
import { AckFailure } from './RoomClient';
import { formatTime, randomId } from '../dom';
import type { PublicChatMessage } from '../../../src/protocol/chat';

interface ViewProps {
  messages: PublicChatMessage[];
  myUserId: string;
  unread: number;
  collapsed: boolean;
  error: string;
  listRef: RefObject<HTMLOListElement | null>;
  onToggle: () => void;
  /** Sends the text; true once the server has it. */
  onSend: (text: string) => Promise<boolean>;
}

function Chat({ messages, myUserId, unread, collapsed, error, listRef, onToggle, onSend }: ViewProps) {
  return (
    <>
      <h2>
        <button type="button" class="panel-toggle" aria-expanded={!collapsed} onClick={onToggle}>
          <span>Chat</span>
          <span class="badge" hidden={unread === 0} aria-label="unread messages">
            {unread > 99 ? '99+' : String(unread)}
          </span>
        </button>
      </h2>
      <div class="panel-body" hidden={collapsed}>
        <ol class="chat-list" aria-live="polite" ref={listRef}>
          {messages.map((m) => (
            <li key={m.id} class={`chat-message${m.userId === myUserId ? ' mine' : ''}`} data-seq={String(m.seq)} data-message-id={m.id}>
              <span class="chat-meta">
                <strong>{m.userName}</strong> <time dateTime={m.createdAt}>{formatTime(m.createdAt)}</time>
              </span>
              <span class="chat-text">{m.text}</span>
            </li>
          ))}
        </ol>
        <p class="form-error" role="alert">
          {error}
        </p>
        <SendBox onSend={onSend} />
      </div>
    </>
  );
}

function SendBox({ onSend }: { onSend: (text: string) => Promise<boolean> }) {
  const [text, setText] = useState('');
  const [sending, setSending] = useState(false);
  /** The box's text right now (a send's answer compares against it, not against its own render). */
  const current = useRef('');
  const input = useRef<HTMLTextAreaElement>(null);
  const change = (value: string) => {
    current.current = value;
    setText(value);
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    const message = current.current.trim();
    if (!message) return;
    setSending(true);
    try {
      // Typed on meanwhile: the new text stays in the box.
      if ((await onSend(message)) && current.current.trim() === message) change('');
    } finally {
      setSending(false);
      input.current?.focus();
    }
  };

  return (
    <form class="chat-form" onSubmit={(e) => void submit(e)}>
      <textarea
        ref={input}
        name="message"
        rows={2}
        placeholder="Message"
        aria-label="Message"
        value={text}
        onInput={(e) => change(e.currentTarget.value)}
        onKeyDown={(e) => {
          // Enter sends; Shift+Enter makes a new line.
          if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            e.currentTarget.form?.requestSubmit();
          }
        }}
      />
      <button type="submit" disabled={sending}>
        Send
      </button>
    </form>
  );
}

export class ChatPanel {
  readonly element: HTMLElement = document.createElement('section');
  readonly #list = createRef<HTMLOListElement>();
  readonly #messages = new Map<string, PublicChatMessage>();
  #unread = 0;
  #collapsed = false;
  #error = '';
  /** The clientId of the text in the box, kept across retries of the same text. */
  #pending: { text: string; clientId: string } | null = null;

  constructor(
    private readonly myUserId: string,
    private readonly send: (text: string, clientId: string) => Promise<PublicChatMessage>,
  ) {
    this.element.className = 'panel chat-panel';
    this.#render();
  }

  get collapsed(): boolean {
    return this.#collapsed;
  }

  setCollapsed(collapsed: boolean): void {
    this.#collapsed = collapsed;
    this.element.classList.toggle('collapsed', collapsed);
    if (!collapsed) this.#unread = 0;
    this.#render();
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
    if (added) this.#render();
  }

  #render(): void {
    render(
      <Chat
        messages={[...this.#messages.values()].sort((a, b) => a.seq - b.seq)}
        myUserId={this.myUserId}
        unread={this.#unread}
        collapsed={this.#collapsed}
        error={this.#error}
        listRef={this.#list}
        onToggle={() => this.setCollapsed(!this.#collapsed)}
        onSend={(text) => this.#send(text)}
      />,
      this.element,
    );
    // The render is synchronous: the list holds the newest message now.
    const list = this.#list.current;
    if (list && !this.#collapsed) list.scrollTop = list.scrollHeight;
  }

  async #send(text: string): Promise<boolean> {
    if (this.#pending?.text !== text) this.#pending = { text, clientId: randomId() };
    this.#error = '';
    this.#render();
    try {
      const message = await this.send(text, this.#pending.clientId);
      this.#pending = null;
      this.add([message], false);
      return true;
    } catch (err) {
      this.#error = err instanceof AckFailure ? err.message : 'The message could not be sent. Try again.';
      this.#render();
      return false;
    }
  }
}
