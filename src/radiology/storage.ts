// DICOM instance files at rest, inside their series' material directory (so deleting the
// material, the case or purging by retention removes them with everything else):
//   DATA_DIR/materials/<seriesMaterialId>/dicom/<instanceId>.dcm.enc   AES-256-GCM, case data key
import fsp from 'node:fs/promises';
import path from 'node:path';
import { decryptBuffer, encryptBuffer } from '../crypto/dataKeys';
import type { MaterialStorage } from '../cases/storage';

const ID = /^[A-Za-z0-9_-]{22}$/;

export class InstanceStorage {
  constructor(private readonly materials: MaterialStorage) {}

  path(seriesId: string, instanceId: string): string {
    if (!ID.test(instanceId)) throw new Error('invalid instance id');
    return path.join(this.materials.materialDir(seriesId), 'dicom', `${instanceId}.dcm.enc`);
  }

  static context(seriesId: string, instanceId: string): string {
    return `dicom:${seriesId}/${instanceId}`;
  }

  /** Written to a temporary name and renamed, so a crash never leaves half a file under the real name. */
  async write(key: Buffer, seriesId: string, instanceId: string, plain: Buffer): Promise<void> {
    const file = this.path(seriesId, instanceId);
    await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    await fsp.writeFile(`${file}.tmp`, encryptBuffer(key, plain, InstanceStorage.context(seriesId, instanceId)), { mode: 0o600 });
    await fsp.rename(`${file}.tmp`, file);
  }

  async read(key: Buffer, seriesId: string, instanceId: string): Promise<Buffer> {
    return decryptBuffer(key, await fsp.readFile(this.path(seriesId, instanceId)), InstanceStorage.context(seriesId, instanceId));
  }

  async remove(seriesId: string, instanceId: string): Promise<void> {
    await fsp.rm(this.path(seriesId, instanceId), { force: true });
  }
}
