// The media signalling contract (mediasoup, DTLS/SRTP only): strict zod schemas of every inbound
// `media:*` event and the shapes the server sends back. Server and browser client import this.
// The flow is client-driven so that every request can be answered by whichever node hosts the
// room's media: join -> create send/recv transports -> connect -> produce; for every producer
// announced, consume (created paused) -> resume once the client's consumer exists.
import { z } from 'zod';

const id22 = z.string().regex(/^[A-Za-z0-9_-]{22}$/);
/** mediasoup object ids are UUIDs. */
const uuid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i);
const shortText = z.string().min(1).max(128);
const smallInt = z.number().int().min(0).max(2 ** 32 - 1);
const codecParameters = z.record(z.string().max(64), z.union([z.string().max(256), z.number().finite()])).refine((r) => Object.keys(r).length <= 32, 'too many codec parameters');
const rtcpFeedback = z.array(z.strictObject({ type: shortText, parameter: z.string().max(64).optional() })).max(16);

export const MEDIA_SOURCES = ['mic', 'camera', 'screen'] as const;
export type MediaSource = (typeof MEDIA_SOURCES)[number];

export const dtlsParametersSchema = z.strictObject({
  role: z.enum(['auto', 'client', 'server']).optional(),
  fingerprints: z
    .array(
      z.strictObject({
        algorithm: z.enum(['sha-1', 'sha-224', 'sha-256', 'sha-384', 'sha-512']),
        value: z.string().regex(/^([0-9A-Fa-f]{2}:){19,63}[0-9A-Fa-f]{2}$/),
      }),
    )
    .min(1)
    .max(5),
});

export const rtpParametersSchema = z.strictObject({
  mid: z.string().max(32).optional(),
  codecs: z
    .array(
      z.strictObject({
        mimeType: z.string().regex(/^(audio|video)\/[A-Za-z0-9.+-]{1,32}$/),
        payloadType: z.number().int().min(0).max(127),
        clockRate: z.number().int().min(1).max(1_000_000),
        channels: z.number().int().min(1).max(8).optional(),
        parameters: codecParameters.optional(),
        rtcpFeedback: rtcpFeedback.optional(),
      }),
    )
    .min(1)
    .max(8),
  headerExtensions: z
    .array(
      z.strictObject({
        uri: z.string().min(1).max(256),
        id: z.number().int().min(1).max(255),
        encrypt: z.boolean().optional(),
        parameters: codecParameters.optional(),
      }),
    )
    .max(16)
    .optional(),
  encodings: z
    .array(
      z.strictObject({
        ssrc: smallInt.optional(),
        rid: z.string().regex(/^[A-Za-z0-9]{1,16}$/).optional(),
        codecPayloadType: z.number().int().min(0).max(127).optional(),
        rtx: z.strictObject({ ssrc: smallInt }).optional(),
        dtx: z.boolean().optional(),
        scalabilityMode: z.string().regex(/^[LS][1-3]T[1-3](_KEY)?h?$/).optional(),
        scaleResolutionDownBy: z.number().finite().min(1).max(64).optional(),
        maxBitrate: z.number().int().min(1000).max(50_000_000).optional(),
        maxFramerate: z.number().finite().min(1).max(120).optional(),
        active: z.boolean().optional(),
        priority: z.enum(['very-low', 'low', 'medium', 'high']).optional(),
        networkPriority: z.enum(['very-low', 'low', 'medium', 'high']).optional(),
        adaptivePtime: z.boolean().optional(),
      }),
    )
    .max(4)
    .optional(),
  rtcp: z.strictObject({ cname: z.string().max(256).optional(), reducedSize: z.boolean().optional(), mux: z.boolean().optional() }).optional(),
  /** Stream and track ids newer mediasoup-client versions send (a=msid). */
  msid: z.string().max(256).optional(),
});

export const rtpCapabilitiesSchema = z.strictObject({
  codecs: z
    .array(
      z.strictObject({
        kind: z.enum(['audio', 'video']),
        mimeType: z.string().regex(/^(audio|video)\/[A-Za-z0-9.+-]{1,32}$/),
        preferredPayloadType: z.number().int().min(0).max(127).optional(),
        clockRate: z.number().int().min(1).max(1_000_000),
        channels: z.number().int().min(1).max(8).optional(),
        parameters: codecParameters.optional(),
        rtcpFeedback: rtcpFeedback.optional(),
      }),
    )
    .max(64)
    .optional(),
  headerExtensions: z
    .array(
      z.strictObject({
        kind: z.enum(['audio', 'video']),
        uri: z.string().min(1).max(256),
        preferredId: z.number().int().min(1).max(255),
        preferredEncrypt: z.boolean().optional(),
        direction: z.enum(['sendrecv', 'sendonly', 'recvonly', 'inactive']).optional(),
      }),
    )
    .max(32)
    .optional(),
});

/** `roomId`: the case id of a case room (or the follow-up id of a follow-up call). */
const room = { roomId: id22 };

export const mediaJoinSchema = z.strictObject({ ...room });
export const mediaLeaveSchema = z.strictObject({ ...room });
export const createTransportSchema = z.strictObject({ ...room, direction: z.enum(['send', 'recv']) });
export const connectTransportSchema = z.strictObject({ ...room, transportId: uuid, dtlsParameters: dtlsParametersSchema });
export const restartIceSchema = z.strictObject({ ...room, transportId: uuid });
export const produceSchema = z.strictObject({
  ...room,
  transportId: uuid,
  kind: z.enum(['audio', 'video']),
  rtpParameters: rtpParametersSchema,
  source: z.enum(MEDIA_SOURCES),
  /** Start muted (a microphone switched on muted, for instance). */
  paused: z.boolean().optional(),
});
export const producerActionSchema = z.strictObject({ ...room, producerId: uuid });
export const consumeSchema = z.strictObject({ ...room, transportId: uuid, producerId: uuid, rtpCapabilities: rtpCapabilitiesSchema });
export const consumerActionSchema = z.strictObject({ ...room, consumerId: uuid });
export const consumerLayersSchema = z.strictObject({
  ...room,
  consumerId: uuid,
  spatialLayer: z.number().int().min(0).max(2),
  temporalLayer: z.number().int().min(0).max(2).optional(),
});

/** Every media request the client can make, by event name, with its schema. */
export const MEDIA_REQUESTS = {
  'media:join': mediaJoinSchema,
  'media:leave': mediaLeaveSchema,
  'media:transport:create': createTransportSchema,
  'media:transport:connect': connectTransportSchema,
  'media:transport:restartIce': restartIceSchema,
  'media:produce': produceSchema,
  'media:producer:pause': producerActionSchema,
  'media:producer:resume': producerActionSchema,
  'media:producer:close': producerActionSchema,
  'media:consume': consumeSchema,
  'media:consumer:pause': consumerActionSchema,
  'media:consumer:resume': consumerActionSchema,
  'media:consumer:layers': consumerLayersSchema,
} as const;

export type MediaRequestName = keyof typeof MEDIA_REQUESTS;
export type MediaRequest<N extends MediaRequestName = MediaRequestName> = z.output<(typeof MEDIA_REQUESTS)[N]>;

export interface IceServer {
  urls: string[];
  username: string;
  credential: string;
}

export interface ProducerInfo {
  id: string;
  /** The connection that produces it (one user may be present twice). */
  socketId: string;
  userId: string;
  name: string;
  kind: 'audio' | 'video';
  source: MediaSource;
  paused: boolean;
}

export interface MediaLimits {
  transportsPerPeer: number;
  producersPerPeer: number;
  consumersPerPeer: number;
}

export interface MediaJoinResult {
  roomId: string;
  /** Opaque to clients: passed to mediasoup-client's Device.load(). */
  routerRtpCapabilities: unknown;
  iceServers: IceServer[];
  producers: ProducerInfo[];
  activeSpeaker: { socketId: string; userId: string } | null;
  limits: MediaLimits;
}

export interface TransportInfo {
  id: string;
  iceParameters: unknown;
  iceCandidates: unknown[];
  dtlsParameters: unknown;
}

export interface ConsumerInfo {
  id: string;
  producerId: string;
  kind: 'audio' | 'video';
  rtpParameters: unknown;
  /** 'simulcast' for camera video: the server switches layers for this consumer. */
  type: string;
  producerPaused: boolean;
  source: MediaSource;
  socketId: string;
  userId: string;
}

/** Answers, by request. */
export interface MediaResponses {
  'media:join': MediaJoinResult;
  'media:leave': null;
  'media:transport:create': TransportInfo;
  'media:transport:connect': null;
  'media:transport:restartIce': { iceParameters: unknown };
  'media:produce': { producerId: string };
  'media:producer:pause': null;
  'media:producer:resume': null;
  'media:producer:close': null;
  'media:consume': ConsumerInfo;
  'media:consumer:pause': null;
  'media:consumer:resume': null;
  'media:consumer:layers': null;
}

export type MediaRestartReason = 'worker-died' | 'moved';

/** Events the server sends about media, to the room or to one connection. */
export interface MediaServerEvents {
  'media:producer:added': (payload: { roomId: string; producer: ProducerInfo }) => void;
  'media:producer:closed': (payload: { roomId: string; producerId: string }) => void;
  'media:producer:state': (payload: { roomId: string; producerId: string; paused: boolean }) => void;
  'media:consumer:closed': (payload: { roomId: string; consumerId: string }) => void;
  'media:consumer:layers': (payload: { roomId: string; consumerId: string; spatialLayer: number | null; temporalLayer: number | null }) => void;
  'media:speaker': (payload: { roomId: string; speaker: { socketId: string; userId: string } | null }) => void;
  /** The room's media moved (its worker died): close every transport and join media again. */
  'media:restart': (payload: { roomId: string; reason: MediaRestartReason }) => void;
}
