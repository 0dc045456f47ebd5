// TURN credentials with coturn's REST-API shared-secret scheme (use-auth-secret): the username is
// "<expiry unix time>:<opaque user ref>" and the password is base64(HMAC-SHA1(secret, username)).
// coturn checks both without a database; the credential stops working at the expiry.
import { createHmac } from 'node:crypto';
import type { IceServer } from '../protocol/media';

export interface TurnConfig {
  urls: string[];
  secret: string | undefined;
  ttlSeconds: number;
}

export function turnCredentials(config: TurnConfig, userRef: string, now: Date): IceServer[] {
  if (config.urls.length === 0 || !config.secret) return [];
  const expiry = Math.floor(now.getTime() / 1000) + config.ttlSeconds;
  const username = `${expiry}:${userRef}`;
  const credential = createHmac('sha1', config.secret).update(username).digest('base64');
  return [{ urls: config.urls, username, credential }];
}
