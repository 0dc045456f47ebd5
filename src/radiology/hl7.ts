// HL7 v2 over MLLP (framing: VT <message> FS CR). The framing is ours, so a message is bounded
// in size before it is parsed and bytes outside a frame are answered instead of buffered;
// messages are parsed by @medplum/core's Hl7Message. Every message gets an ACK: AA applied,
// AE could not be applied (nothing changed, a resend may work), AR rejected (nothing changed:
// unsupported type, malformed, sender not allowed). ADT registers or updates the patient;
// ORM attaches an order (creating the case); ORU attaches a report to the matching case.
import net from 'node:net';
import { Hl7Message } from '@medplum/core';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import type { AuditActor } from '../audit/model';
import type { AuditService } from '../audit/service';
import type { Logger } from '../observability/logger';
import { DicomIntakeError, isoDate, personName, sexFrom } from './dicom';
import type { Hl7Peer } from './peers';
import type { PatientFacts, RadiologyService } from './service';

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

export type AckCode = 'AA' | 'AE' | 'AR';

export interface Hl7Options {
  port: number;
  host: string;
  peers: Hl7Peer[];
  maxMessageBytes: number;
  /** Messages per sender address per minute. */
  limiter: RateLimiterAbstract;
}

class Reject extends Error {
  constructor(
    readonly code: 'AE' | 'AR',
    readonly reason: string,
  ) {
    super(reason);
  }
}

const ADT_EVENTS = new Set(['A01', 'A04', 'A08', 'A28', 'A31']);

/** An ACK for a message we could not parse (no control id to echo). */
function genericNak(reason: string): string {
  const now = new Date().toISOString().replace(/[-:TZ.]/g, '').slice(0, 14);
  return `MSH|^~\\&|CASECOLLAB||||${now}||ACK|${Date.now()}|P|2.5\rMSA|AR||${escapeText(reason)}`;
}

function escapeText(text: string): string {
  return text.replace(/\\/g, '\\E\\').replace(/\|/g, '\\F\\').replace(/\^/g, '\\S\\').replace(/&/g, '\\T\\').replace(/~/g, '\\R\\').replace(/[\r\n]/g, ' ');
}

function frame(text: string): Buffer {
  return Buffer.concat([Buffer.from([VT]), Buffer.from(text, 'utf8'), Buffer.from([FS, CR])]);
}

function patientFrom(message: Hl7Message): (PatientFacts & { id: string }) | null {
  const pid = message.getSegment('PID');
  if (!pid) return null;
  const id = pid.getComponent(3, 1).trim();
  if (!id || id.length > 64) return null;
  const family = pid.getComponent(5, 1);
  const given = pid.getComponent(5, 2);
  const middle = pid.getComponent(5, 3);
  const name = family || given ? personName([family, given, middle].join('^')).slice(0, 200) : null;
  const birth = pid.getComponent(7, 1).slice(0, 8);
  return { id, name: name || null, birthDate: isoDate(birth || null), sex: sexFrom(pid.getComponent(8, 1) || null) };
}

/** IHE Scheduled Workflow: accession number in OBR-18; else the filler order number (OBR-3, ORC-3). */
function accessionOf(message: Hl7Message): string | null {
  const obr = message.getSegment('OBR');
  const orc = message.getSegment('ORC');
  const candidates = [obr?.getComponent(18, 1), obr?.getComponent(3, 1), orc?.getComponent(3, 1)];
  const found = candidates.find((c) => c && c.trim() !== '');
  return found ? found.trim().slice(0, 64) : null;
}

export class Hl7Listener {
  #server: net.Server;
  #sockets = new Set<net.Socket>();
  #closed = false;
  port = 0;

  private constructor(server: net.Server) {
    this.#server = server;
  }

  static async start(options: Hl7Options, radiology: RadiologyService, audit: AuditService, logger: Logger): Promise<Hl7Listener> {
    const log = logger.child({ module: 'hl7' });

    const handle = async (text: string, ip: string | null): Promise<string> => {
      let message: Hl7Message;
      try {
        message = Hl7Message.parse(text);
        if (message.header?.name !== 'MSH') throw new Error('no MSH');
      } catch {
        await audit.record({ siteId: null, type: 'radiology.hl7.message', action: 'E', outcome: 4, actor: { userId: null, role: 'hl7-peer', ip, userAgent: null }, details: { ack: 'AR', reason: 'malformed' } });
        return genericNak('The message could not be parsed as HL7 v2 (it must start with an MSH segment).');
      }
      const facility = message.header.getComponent(4, 1).trim();
      const type = message.header.getComponent(9, 1).trim();
      const event = message.header.getComponent(9, 2).trim();
      const controlId = message.header.getField(10)?.toString().trim() ?? '';
      const actor: AuditActor = { userId: null, role: 'hl7-peer', ip, userAgent: `HL7 ${facility || '?'}`.slice(0, 256) };
      const ack = (code: AckCode, reason?: string) => {
        const reply = message.buildAck({ ackCode: code });
        if (reason) reply.getSegment('MSA')?.setField(3, escapeText(reason));
        return reply.toString();
      };
      const peer = options.peers.find((p) => (p.facility === '*' || p.facility === facility) && p.address.matches(ip));
      if (!peer) {
        log.warn({ ip, facility }, 'HL7 message from a sender on no allowlist');
        await audit.record({ siteId: null, type: 'radiology.hl7.message', action: 'E', outcome: 4, actor, details: { ack: 'AR', reason: 'sender not allowed', type: `${type}^${event}` } });
        return ack('AR', 'This sender (MSH-4 and address) is not allowed.');
      }
      const siteId = peer.siteId;
      const details = { type: `${type}^${event}`.slice(0, 20), controlId: controlId.slice(0, 64) };
      try {
        if (!controlId || controlId.length > 199) throw new Reject('AR', 'MSH-10 message control id is missing.');
        try {
          await options.limiter.consume(ip ?? 'unknown');
        } catch {
          throw new Reject('AE', 'Too many messages; resend later.');
        }
        await audit.record({ siteId, type: 'radiology.hl7.received', action: 'E', actor, details });
        let applied: string;
        if (type === 'ADT') {
          if (!ADT_EVENTS.has(event)) throw new Reject('AR', `ADT^${event} is not supported (A01, A04, A08, A28, A31 are).`);
          const patient = patientFrom(message);
          if (!patient) throw new Reject('AE', 'PID-3 (patient identifier) is missing.');
          const result = await radiology.upsertPatient(siteId, patient, actor, { event });
          applied = result.created ? 'patient registered' : 'patient updated';
        } else if (type === 'ORM' || type === 'ORU') {
          if ((type === 'ORM' && event !== 'O01') || (type === 'ORU' && event !== 'R01')) throw new Reject('AR', `${type}^${event} is not supported.`);
          const accession = accessionOf(message);
          if (!accession) throw new Reject('AE', 'No accession number (OBR-18, OBR-3 or ORC-3).');
          const obr = message.getSegment('OBR');
          const procedure = (obr?.getComponent(4, 2) || obr?.getComponent(4, 1) || 'Radiology order').slice(0, 150);
          const text =
            type === 'ORU'
              ? message
                  .getAllSegments('OBX')
                  .map((obx) => obx.getField(5)?.toString() ?? '')
                  .join('\n')
                  .slice(0, 100_000)
              : procedure;
          if (type === 'ORU' && text.trim() === '') throw new Reject('AE', 'The report has no OBX-5 text.');
          const status = type === 'ORU' ? obr?.getComponent(25, 1) || null : message.getSegment('ORC')?.getComponent(1, 1) || null;
          const result = await radiology.attachDocument(
            siteId,
            { kind: type === 'ORM' ? 'order' : 'report', accession, messageControlId: controlId, text, status, title: `Radiology order: ${procedure}`, patient: patientFrom(message) },
            actor,
          );
          if (!result) throw new Reject('AE', 'No case has this accession number; send the order (ORM) or the images first.');
          applied = result.duplicate ? 'already applied' : type === 'ORM' ? 'order attached' : 'report attached';
        } else {
          throw new Reject('AR', `Message type ${type}^${event} is not supported (ADT, ORM^O01, ORU^R01 are).`);
        }
        await audit.record({ siteId, type: 'radiology.hl7.applied', action: 'E', actor, details: { ...details, result: applied } });
        return ack('AA');
      } catch (err) {
        const reject = err instanceof Reject ? err : err instanceof DicomIntakeError ? new Reject('AE', err.reason) : null;
        if (!reject) {
          log.error({ err: { name: (err as Error).name, message: (err as Error).message } }, 'HL7 message failed');
          await audit.record({ siteId, type: 'radiology.hl7.rejected', action: 'E', outcome: 8, actor, details: { ...details, ack: 'AE', reason: 'internal error' } }).catch(() => undefined);
          return ack('AE', 'The message could not be applied; resend later.');
        }
        log.info({ ack: reject.code, type: details.type }, 'HL7 message not applied');
        await audit.record({ siteId, type: 'radiology.hl7.rejected', action: 'E', outcome: 4, actor, details: { ...details, ack: reject.code, reason: reject.reason.slice(0, 200) } });
        return ack(reject.code, reject.reason);
      }
    };

    const server = net.createServer((socket) => {
      if (listener.#closed) return socket.destroy();
      const ip = socket.remoteAddress ?? null;
      if (!options.peers.some((p) => p.address.matches(ip))) {
        log.warn({ ip }, 'HL7 connection from an address on no allowlist');
        void audit.record({ siteId: null, type: 'radiology.hl7.message', action: 'E', outcome: 4, actor: { userId: null, role: 'hl7-peer', ip, userAgent: null }, details: { ack: 'none', reason: 'address not allowed' } }).catch(() => undefined);
        return socket.destroy();
      }
      listener.#sockets.add(socket);
      socket.once('close', () => listener.#sockets.delete(socket));
      socket.on('error', () => undefined);
      socket.setTimeout(5 * 60_000, () => socket.destroy());
      let buffer = Buffer.alloc(0);
      let inFrame = false;
      // Messages of one connection are answered in order.
      let chain: Promise<void> = Promise.resolve();
      const reply = (text: string) => {
        if (!socket.destroyed) socket.write(frame(text));
      };
      socket.on('data', (chunk: Buffer) => {
        buffer = Buffer.concat([buffer, chunk]);
        for (;;) {
          if (!inFrame) {
            const start = buffer.indexOf(VT);
            const garbage = start < 0 ? buffer : buffer.subarray(0, start);
            // Line breaks between frames are tolerated; anything else is answered once.
            if (garbage.some((b) => b !== CR && b !== 0x0a)) {
              chain = chain.then(() => {
                reply(genericNak('Bytes outside an MLLP frame (VT ... FS CR) were discarded.'));
                return audit.record({ siteId: null, type: 'radiology.hl7.message', action: 'E', outcome: 4, actor: { userId: null, role: 'hl7-peer', ip, userAgent: null }, details: { ack: 'AR', reason: 'garbage outside a frame' } }).then(() => undefined);
              });
            }
            if (start < 0) {
              buffer = Buffer.alloc(0);
              return;
            }
            buffer = buffer.subarray(start + 1);
            inFrame = true;
          }
          const end = buffer.indexOf(FS);
          if (end < 0 || end > options.maxMessageBytes) {
            if (buffer.length > options.maxMessageBytes) {
              log.warn({ ip, bytes: buffer.length }, 'HL7 message too large');
              chain = chain.then(() => {
                reply(genericNak(`The message is larger than ${options.maxMessageBytes} bytes.`));
                return audit.record({ siteId: null, type: 'radiology.hl7.message', action: 'E', outcome: 4, actor: { userId: null, role: 'hl7-peer', ip, userAgent: null }, details: { ack: 'AR', reason: 'oversized' } }).then(() => {
                  socket.end();
                });
              });
              buffer = Buffer.alloc(0);
              socket.pause();
            }
            return;
          }
          const text = buffer.subarray(0, end).toString('utf8');
          buffer = buffer.subarray(end + 1);
          if (buffer[0] === CR) buffer = buffer.subarray(1);
          inFrame = false;
          chain = chain.then(() => handle(text.replace(/\r?\n/g, '\r').replace(/\r+$/, ''), ip).then(reply, (err) => log.error({ err: { message: (err as Error).message } }, 'HL7 reply failed')));
        }
      });
    });
    const listener = new Hl7Listener(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    listener.port = (server.address() as net.AddressInfo).port;
    log.info({ port: listener.port }, 'HL7 MLLP listener ready');
    return listener;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
