// MongoDB repository of patient follow-ups and consent records (same contract as
// src/store/sqlite/followups.ts). MongoDB has no cascading deletes: purge removes a follow-up's
// consent records first, then the follow-up.
import mongoose, { Schema, type Connection, type Model } from 'mongoose';
import type { ConsentRecord, FollowUpPatch, FollowUpRecord, FollowUpRepository } from '../../followups/model';

const MAJORITY = { w: 'majority', j: true } as const;
const OPTIONS = { writeConcern: MAJORITY, versionKey: false, minimize: false, strictQuery: true, autoIndex: false, id: false } as const;
const { trusted } = mongoose;

type FollowUpDoc = Omit<FollowUpRecord, 'id'> & { _id: string };
type ConsentDoc = Omit<ConsentRecord, 'id'> & { _id: string };

const str = { type: String };
const num = { type: Number };

const followUpSchema = new Schema<FollowUpDoc>(
  {
    _id: str,
    siteId: str,
    caseId: str,
    hostUserId: str,
    colleagues: [str],
    contactLabelSealed: str,
    startsAt: str,
    endsAt: str,
    verification: str,
    tokenHash: str,
    state: str,
    bindingId: str,
    bound: { type: Boolean },
    deviceCheck: { type: Schema.Types.Mixed },
    waitingSince: str,
    verifiedAt: str,
    failedVerifications: num,
    messages: { type: Schema.Types.Mixed },
    inviteSentAt: str,
    consentedAt: str,
    admittedAt: str,
    endedAt: str,
    createdAt: str,
    updatedAt: str,
  },
  { ...OPTIONS, collection: 'follow_ups' },
);
followUpSchema.index({ siteId: 1, endsAt: 1 });
followUpSchema.index({ siteId: 1, caseId: 1 });
followUpSchema.index({ siteId: 1, hostUserId: 1, endsAt: 1 });
followUpSchema.index({ siteId: 1, colleagues: 1, endsAt: 1 });

const consentSchema = new Schema<ConsentDoc>(
  { _id: str, siteId: str, followUpId: str, textVersion: str, textSha256: str, givenAt: str, ip: str, userAgent: str },
  { ...OPTIONS, collection: 'follow_up_consents' },
);
consentSchema.index({ siteId: 1, followUpId: 1, givenAt: 1 });

export interface FollowUpModels {
  followUps: Model<FollowUpDoc>;
  followUpConsents: Model<ConsentDoc>;
}

export function followUpModels(conn: Connection): FollowUpModels {
  return {
    followUps: conn.model<FollowUpDoc>('FollowUp', followUpSchema, 'follow_ups'),
    followUpConsents: conn.model<ConsentDoc>('FollowUpConsent', consentSchema, 'follow_up_consents'),
  };
}

const fromDoc = ({ _id, ...rest }: FollowUpDoc): FollowUpRecord => ({ id: _id, ...rest, colleagues: [...rest.colleagues], messages: [...(rest.messages ?? [])] });

export class MongoFollowUps implements FollowUpRepository {
  constructor(private readonly m: FollowUpModels) {}

  async create(r: FollowUpRecord): Promise<void> {
    const { id, ...rest } = r;
    await this.m.followUps.create([{ _id: id, ...rest }]);
  }

  async findById(id: string): Promise<FollowUpRecord | null> {
    const doc = await this.m.followUps.findOne({ _id: id }).lean<FollowUpDoc>();
    return doc ? fromDoc(doc) : null;
  }

  async update(id: string, expectUpdatedAt: string, patch: FollowUpPatch & { updatedAt: string }): Promise<FollowUpRecord | null> {
    const set = Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined));
    const doc = await this.m.followUps
      .findOneAndUpdate({ _id: id, updatedAt: expectUpdatedAt }, trusted({ $set: set }), { new: true, writeConcern: MAJORITY })
      .lean<FollowUpDoc>();
    return doc ? fromDoc(doc) : null;
  }

  async listForUser(siteId: string, userId: string, after: string): Promise<FollowUpRecord[]> {
    const docs = await this.m.followUps
      .find(trusted({ siteId, endsAt: { $gt: after }, $or: [{ hostUserId: userId }, { colleagues: userId }] }))
      .sort({ startsAt: 1, _id: 1 })
      .lean<FollowUpDoc[]>();
    return docs.map(fromDoc);
  }

  async listByCase(siteId: string, caseId: string): Promise<FollowUpRecord[]> {
    const docs = await this.m.followUps.find({ siteId, caseId }).sort({ startsAt: 1, _id: 1 }).lean<FollowUpDoc[]>();
    return docs.map(fromDoc);
  }

  async addConsent(c: ConsentRecord): Promise<void> {
    const { id, ...rest } = c;
    await this.m.followUpConsents.create([{ _id: id, ...rest }]);
  }

  async listConsents(siteId: string, followUpId: string): Promise<ConsentRecord[]> {
    const docs = await this.m.followUpConsents.find({ siteId, followUpId }).sort({ givenAt: 1, _id: 1 }).lean<ConsentDoc[]>();
    return docs.map(({ _id, ...rest }) => ({ id: _id, ...rest }));
  }

  async purge(siteId: string, filter: { endedBefore: string } | { caseId: string }): Promise<number> {
    const query = 'caseId' in filter ? { siteId, caseId: filter.caseId } : trusted({ siteId, endsAt: { $lt: filter.endedBefore } });
    const ids = (await this.m.followUps.find(query, { _id: 1 }).lean<{ _id: string }[]>()).map((d) => d._id);
    if (ids.length === 0) return 0;
    await this.m.followUpConsents.deleteMany(trusted({ siteId, followUpId: { $in: ids } }), { writeConcern: MAJORITY });
    const { deletedCount } = await this.m.followUps.deleteMany(trusted({ siteId, _id: { $in: ids } }), { writeConcern: MAJORITY });
    return deletedCount;
  }
}
