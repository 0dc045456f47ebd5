// Starts and stops the radiology listeners of a node: DICOM DIMSE (DICOM_PORT) and HL7 MLLP
// (HL7_PORT). Both are off unless their port is set; their allowlists are checked here, so a bad
// value stops the start with a message naming the variable.
import fs from 'node:fs';
import type { App } from '../app';
import type { Config } from '../config';
import { ConfigError } from '../config';
import { memoryLimiters, type LimiterFactory } from '../http/rateLimit';
import type { Logger } from '../observability/logger';
import { DicomListener } from './dimse';
import { Hl7Listener } from './hl7';
import { parseAeTitles, parseDicomPeers, parseHl7Peers, PeerConfigError } from './peers';

export interface RadiologyListeners {
  dicom: DicomListener | null;
  hl7: Hl7Listener | null;
  close(): Promise<void>;
}

/** Instances per calling peer per minute and associations per address per minute. */
export const DIMSE_LIMITS = { instancesPerPeerPerMinute: 20_000, associationsPerAddressPerMinute: 600, hl7MessagesPerAddressPerMinute: 3000 };

export async function startRadiologyListeners(
  config: Pick<Config, 'radiology' | 'host'>,
  app: App,
  tls: { key: string; cert: string },
  logger: Logger,
  limiters: LimiterFactory = memoryLimiters,
): Promise<RadiologyListeners> {
  const r = config.radiology;
  let dicom: DicomListener | null = null;
  let hl7: Hl7Listener | null = null;
  try {
    if (r.dicomPort !== null) {
      let aeTitles;
      let peers;
      try {
        aeTitles = parseAeTitles(r.aeTitles);
        peers = parseDicomPeers(r.dicomPeers, aeTitles);
      } catch (err) {
        if (err instanceof PeerConfigError) throw new ConfigError(`invalid configuration:\n  DICOM_AE_TITLES/DICOM_PEERS: ${err.message}`);
        throw err;
      }
      if (aeTitles.size === 0) throw new ConfigError('invalid configuration:\n  DICOM_AE_TITLES: required when DICOM_PORT is set');
      dicom = await DicomListener.start(
        {
          port: r.dicomPort,
          host: config.host,
          aeTitles,
          peers,
          tls: r.dicomTls ? { key: tls.key, cert: tls.cert, ca: r.dicomTlsCaFile ? fs.readFileSync(r.dicomTlsCaFile, 'utf8') : undefined } : null,
          maxInstanceBytes: r.maxInstanceBytes,
          limiter: limiters('dicom-peer', { points: DIMSE_LIMITS.instancesPerPeerPerMinute, duration: 60 }),
          connectionLimiter: limiters('dicom-connections', { points: DIMSE_LIMITS.associationsPerAddressPerMinute, duration: 60 }),
        },
        app.radiology,
        app.audit,
        logger,
      );
    }
    if (r.hl7Port !== null) {
      let peers;
      try {
        peers = parseHl7Peers(r.hl7Peers);
      } catch (err) {
        if (err instanceof PeerConfigError) throw new ConfigError(`invalid configuration:\n  HL7_PEERS: ${err.message}`);
        throw err;
      }
      hl7 = await Hl7Listener.start(
        {
          port: r.hl7Port,
          host: config.host,
          peers,
          maxMessageBytes: r.hl7MaxMessageBytes,
          limiter: limiters('hl7-peer', { points: DIMSE_LIMITS.hl7MessagesPerAddressPerMinute, duration: 60 }),
        },
        app.radiology,
        app.audit,
        logger,
      );
    }
  } catch (err) {
    await dicom?.close();
    throw err;
  }
  return {
    dicom,
    hl7,
    async close() {
      await Promise.all([dicom?.close(), hl7?.close()]);
    },
  };
}
