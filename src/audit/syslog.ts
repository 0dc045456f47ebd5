// Audit forwarding to a syslog collector, the IHE ATNA "Record Audit Event" transport: each
// audit record becomes an RFC 5424 message whose MSG is a DICOM PS3.15 A.5 AuditMessage (XML),
// sent over TLS with RFC 5425 octet-counting framing ("<length> <message>").
//
// The store's hash-chained trail stays the record of truth; forwarding is a copy for the
// hospital's audit repository. Records queue in memory (bounded) while the collector is
// unreachable and are sent in order once it is back; a record written to a connection that
// then drops may be lost, which the collector can detect from the per-site sequence numbers.
import fs from 'node:fs';
import os from 'node:os';
import tls from 'node:tls';
import type { Logger } from '../observability/logger';
import { DCM_SYSTEM, eventCode, objectTypeCode } from './codes';
import type { AuditRecord } from './model';

export const APP_NAME = 'case-collab';
/** ATNA: the MSGID of a DICOM audit message. */
export const ATNA_MSGID = 'IHE+RFC-3881';
/** Facility 10 (security/authorization); severity 5 (notice) for success, 4 (warning) otherwise. */
const FACILITY = 10;

function xmlEscape(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

function attrs(values: Record<string, string | number | null | undefined>): string {
  return Object.entries(values)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => ` ${k}="${xmlEscape(String(v))}"`)
    .join('');
}

/** The DICOM PS3.15 A.5.1 AuditMessage of one record. */
export function atnaXml(r: AuditRecord, sourceId: string): string {
  const code = eventCode(r.type);
  const system = r.actor.userId === null;
  const objects = r.objects
    .map(
      (o) =>
        `<ParticipantObjectIdentification${attrs({ ParticipantObjectID: o.id, ParticipantObjectTypeCode: objectTypeCode(o.type) })}>` +
        `<ParticipantObjectIDTypeCode${attrs({ 'csd-code': o.type, codeSystemName: 'urn:case-collab:object-type', originalText: o.type })}/>` +
        `</ParticipantObjectIdentification>`,
    )
    .join('');
  const details = [
    ['seq', String(r.seq)],
    ['prevHash', r.prevHash],
    ['hash', r.hash],
    ...Object.entries(r.details).map(([k, v]) => [k, v === null ? 'null' : String(v)]),
  ]
    .map(([k, v]) => `<ParticipantObjectDetail${attrs({ type: k, value: Buffer.from(v!).toString('base64') })}/>`)
    .join('');
  return (
    '<?xml version="1.0" encoding="UTF-8"?>' +
    '<AuditMessage>' +
    `<EventIdentification${attrs({ EventActionCode: r.action, EventDateTime: r.time, EventOutcomeIndicator: r.outcome })}>` +
    `<EventID${attrs({ 'csd-code': code.code, codeSystemName: 'DCM', originalText: code.display })}/>` +
    `<EventTypeCode${attrs({ 'csd-code': r.type, codeSystemName: 'urn:case-collab:audit-event-type', originalText: r.type })}/>` +
    '</EventIdentification>' +
    `<ActiveParticipant${attrs({
      UserID: system ? (r.actor.userAgent ?? 'system') : r.actor.userId,
      UserIsRequestor: system ? 'false' : 'true',
      NetworkAccessPointID: r.actor.ip,
      NetworkAccessPointTypeCode: r.actor.ip ? '2' : null,
    })}>` +
    (r.actor.role ? `<RoleIDCode${attrs({ 'csd-code': r.actor.role, codeSystemName: 'urn:case-collab:role', originalText: r.actor.role })}/>` : '') +
    '</ActiveParticipant>' +
    `<AuditSourceIdentification${attrs({ AuditEnterpriseSiteID: r.siteId, AuditSourceID: sourceId })}>` +
    `<AuditSourceTypeCode${attrs({ 'csd-code': '4', codeSystemName: 'DCM', originalText: 'Application Server Process' })}/>` +
    '</AuditSourceIdentification>' +
    objects +
    `<ParticipantObjectIdentification${attrs({ ParticipantObjectID: r.id, ParticipantObjectTypeCode: '2', ParticipantObjectTypeCodeRole: '13' })}>` +
    `<ParticipantObjectIDTypeCode${attrs({ 'csd-code': 'audit-record', codeSystemName: 'urn:case-collab:object-type', originalText: 'audit record' })}/>` +
    details +
    '</ParticipantObjectIdentification>' +
    '</AuditMessage>'
  );
}

/** RFC 5424: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG, MSG as BOM + UTF-8. */
export function syslogMessage(r: AuditRecord, hostname: string, procId: string | number): Buffer {
  const severity = r.outcome === 0 ? 5 : 4;
  const header = `<${FACILITY * 8 + severity}>1 ${r.time} ${hostname} ${APP_NAME} ${procId} ${ATNA_MSGID} - `;
  return Buffer.concat([Buffer.from(header, 'ascii'), Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(atnaXml(r, `${APP_NAME}@${hostname}`), 'utf8')]);
}

/** RFC 5425 octet-counting frame. */
export function frame(message: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${message.length} `, 'ascii'), message]);
}

export interface SyslogOptions {
  /** tls://host:port */
  url: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  logger: Logger;
  /** Records held while the collector is unreachable; older ones are dropped beyond it. */
  maxQueue?: number;
  /** First reconnect delay; doubles up to maxBackoffMs. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/** RFC 5424 HOSTNAME: printable US-ASCII, at most 255 characters. */
function syslogHostname(): string {
  return (os.hostname().replace(/[^\x21-\x7e]/g, '') || '-').slice(0, 255);
}

export class SyslogForwarder {
  readonly #host: string;
  readonly #port: number;
  readonly #tlsOptions: tls.ConnectionOptions;
  readonly #logger: Logger;
  readonly #maxQueue: number;
  readonly #minBackoff: number;
  readonly #maxBackoff: number;
  readonly #hostname = syslogHostname();
  #queue: Buffer[] = [];
  #socket: tls.TLSSocket | null = null;
  #connected = false;
  #reconnect: NodeJS.Timeout | null = null;
  #backoff: number;
  #dropped = 0;
  #sent = 0;
  #closed = false;

  constructor(options: SyslogOptions) {
    const url = new URL(options.url);
    if (url.protocol !== 'tls:') throw new Error('AUDIT_SYSLOG_URL must be tls://host:port');
    this.#host = url.hostname;
    this.#port = Number(url.port);
    this.#tlsOptions = {
      host: this.#host,
      port: this.#port,
      servername: /^[\d.]+$|:/.test(this.#host) ? undefined : this.#host,
      ca: options.caFile ? fs.readFileSync(options.caFile) : undefined,
      cert: options.certFile ? fs.readFileSync(options.certFile) : undefined,
      key: options.keyFile ? fs.readFileSync(options.keyFile) : undefined,
      minVersion: 'TLSv1.2',
    };
    this.#logger = options.logger;
    this.#maxQueue = options.maxQueue ?? 10_000;
    this.#minBackoff = options.minBackoffMs ?? 500;
    this.#maxBackoff = options.maxBackoffMs ?? 30_000;
    this.#backoff = this.#minBackoff;
    this.#connect();
  }

  get stats(): { queued: number; sent: number; dropped: number; connected: boolean } {
    return { queued: this.#queue.length, sent: this.#sent, dropped: this.#dropped, connected: this.#connected };
  }

  send(record: AuditRecord): void {
    if (this.#closed) return;
    this.#queue.push(frame(syslogMessage(record, this.#hostname, process.pid)));
    if (this.#queue.length > this.#maxQueue) {
      this.#queue.shift();
      if (this.#dropped++ === 0) this.#logger.warn({ alert: 'audit_syslog_dropping', maxQueue: this.#maxQueue }, 'audit syslog queue full: dropping the oldest records');
    }
    this.#flush();
  }

  #connect(): void {
    if (this.#closed) return;
    const socket = tls.connect(this.#tlsOptions);
    this.#socket = socket;
    socket.setKeepAlive(true, 30_000);
    socket.once('secureConnect', () => {
      this.#connected = true;
      this.#backoff = this.#minBackoff;
      this.#logger.info({ host: this.#host, port: this.#port }, 'audit syslog connected');
      this.#flush();
    });
    // The collector never talks back in RFC 5425; anything it sends is ignored.
    socket.on('data', () => undefined);
    socket.on('drain', () => this.#flush());
    socket.once('error', (err) => {
      this.#logger.warn({ host: this.#host, port: this.#port, err: { message: err.message }, alert: 'audit_syslog_unreachable' }, 'audit syslog connection failed');
    });
    socket.once('close', () => {
      this.#connected = false;
      this.#socket = null;
      if (this.#closed) return;
      this.#reconnect = setTimeout(() => {
        this.#reconnect = null;
        this.#connect();
      }, this.#backoff);
      this.#reconnect.unref();
      this.#backoff = Math.min(this.#backoff * 2, this.#maxBackoff);
    });
  }

  #flush(): void {
    const socket = this.#socket;
    if (!socket || !this.#connected) return;
    while (this.#queue.length > 0) {
      const next = this.#queue.shift()!;
      this.#sent++;
      if (!socket.write(next)) return; // resumes on 'drain'
    }
  }

  /** Sends what is queued (up to `graceMs`), then closes. */
  async close(graceMs = 2000): Promise<void> {
    if (this.#closed) return;
    const deadline = Date.now() + graceMs;
    while (this.#queue.length > 0 && this.#connected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    this.#closed = true;
    if (this.#reconnect) clearTimeout(this.#reconnect);
    const socket = this.#socket;
    if (!socket) return;
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.end();
      setTimeout(() => {
        socket.destroy();
        resolve();
      }, 1000).unref();
    });
  }
}
