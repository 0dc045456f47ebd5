// Allowlists of the radiology listeners, parsed from configuration: which AE titles are ours and
// which site each serves, which calling AE titles may connect from which addresses, which HL7
// senders feed which site, and the STOW-RS intake tokens (stored as SHA-256 hashes only).
import { BlockList, isIP } from 'node:net';

const AE = /^[\x20-\x5b\x5d-\x7e]{1,16}$/; // PS3.5: 16 chars, no backslash, no control chars
const SITE = /^[A-Za-z0-9_-]{22}$/;

export class PeerConfigError extends Error {
  override name = 'PeerConfigError';
}

/** "10.0.0.5", "10.0.0.0/8", "::1", "*": matches client addresses (IPv4-mapped IPv6 unwrapped). */
export class AddressMatcher {
  readonly #any: boolean;
  readonly #list = new BlockList();

  constructor(readonly spec: string) {
    this.#any = spec === '*';
    if (this.#any) return;
    const [address, prefix] = spec.split('/');
    const family = isIP(address ?? '');
    if (!family) throw new PeerConfigError(`"${spec}" is not an IP address, CIDR or *`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (prefix === undefined) this.#list.addAddress(address!, type);
    else {
      const bits = Number(prefix);
      if (!Number.isInteger(bits) || bits < 0 || bits > (family === 4 ? 32 : 128)) throw new PeerConfigError(`"${spec}" has a bad prefix length`);
      this.#list.addSubnet(address!, bits, type);
    }
  }

  matches(ip: string | null | undefined): boolean {
    if (this.#any) return true;
    if (!ip) return false;
    const plain = ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
    const family = isIP(plain);
    if (!family) return false;
    return this.#list.check(plain, family === 4 ? 'ipv4' : 'ipv6');
  }
}

function entries(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
}

/** DICOM_AE_TITLES="CASECOLLAB=<siteId>,OTHER_AE=<siteId>": our called AE titles and their sites. */
export function parseAeTitles(value: string | undefined): Map<string, string> {
  const map = new Map<string, string>();
  for (const entry of entries(value)) {
    const [ae, siteId] = entry.split('=').map((s) => s.trim());
    if (!ae || !AE.test(ae) || !siteId || !SITE.test(siteId)) throw new PeerConfigError(`DICOM_AE_TITLES entry "${entry}" must be AE_TITLE=<site id>`);
    if (map.has(ae)) throw new PeerConfigError(`AE title ${ae} is listed twice`);
    map.set(ae, siteId);
  }
  return map;
}

export interface DicomPeer {
  callingAe: string;
  address: AddressMatcher;
  calledAe: string;
}

/** DICOM_PEERS="MODALITY1@10.1.2.3=CASECOLLAB,PACS@10.1.0.0/16=CASECOLLAB": who may send to which AE. */
export function parseDicomPeers(value: string | undefined, aeTitles: Map<string, string>): DicomPeer[] {
  return entries(value).map((entry) => {
    const match = /^([^@=]+)@([^=]+)=(.+)$/.exec(entry);
    if (!match) throw new PeerConfigError(`DICOM_PEERS entry "${entry}" must be CALLING_AE@address=CALLED_AE`);
    const [, callingAe, address, calledAe] = match.map((s) => s.trim()) as [string, string, string, string];
    if (!AE.test(callingAe)) throw new PeerConfigError(`"${callingAe}" is not a valid AE title`);
    if (!aeTitles.has(calledAe)) throw new PeerConfigError(`DICOM_PEERS names AE title ${calledAe}, which DICOM_AE_TITLES does not define`);
    return { callingAe, address: new AddressMatcher(address), calledAe };
  });
}

export interface Hl7Peer {
  /** MSH-4 Sending Facility (first component), or * for any. */
  facility: string;
  address: AddressMatcher;
  siteId: string;
}

/** HL7_PEERS="RIS_FACILITY@10.1.2.3=<siteId>": which sender, from where, feeds which site. */
export function parseHl7Peers(value: string | undefined): Hl7Peer[] {
  return entries(value).map((entry) => {
    const match = /^([^@=]+)@([^=]+)=(.+)$/.exec(entry);
    if (!match) throw new PeerConfigError(`HL7_PEERS entry "${entry}" must be SENDING_FACILITY@address=<site id>`);
    const [, facility, address, siteId] = match.map((s) => s.trim()) as [string, string, string, string];
    if (!SITE.test(siteId)) throw new PeerConfigError(`HL7_PEERS entry "${entry}" names an invalid site id`);
    return { facility, address: new AddressMatcher(address), siteId };
  });
}

/** DICOMWEB_TOKENS="<siteId>=<sha256 hex of the token>": per-site STOW-RS intake tokens. */
export function parseIntakeTokens(value: string | undefined): Map<string, string> {
  const map = new Map<string, string>();
  for (const entry of entries(value)) {
    const [siteId, hash] = entry.split('=').map((s) => s.trim());
    if (!siteId || !SITE.test(siteId) || !hash || !/^[0-9a-f]{64}$/.test(hash)) throw new PeerConfigError(`DICOMWEB_TOKENS entry must be <site id>=<sha256 hex>`);
    map.set(hash, siteId);
  }
  return map;
}
