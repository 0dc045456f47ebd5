// multipart/related (RFC 2387) as STOW-RS sends it (PS3.18 8.6.1.2): parts separated by
// "--boundary", each with its own headers. Bodies are returned as slices of the request buffer.
export class MultipartError extends Error {
  override name = 'MultipartError';
}

export interface Part {
  contentType: string | null;
  body: Buffer;
}

/** The boundary and root type of a multipart/related Content-Type, or null if it is not one. */
export function relatedBoundary(contentType: string | undefined): { boundary: string; type: string | null } | null {
  if (!contentType || !/^multipart\/related\s*(;|$)/i.test(contentType)) return null;
  const param = (name: string) => {
    const m = new RegExp(`;\\s*${name}\\s*=\\s*(?:"([^"]*)"|([^;\\s]*))`, 'i').exec(contentType);
    return m ? (m[1] ?? m[2] ?? null) : null;
  };
  const boundary = param('boundary');
  if (!boundary || boundary.length > 200) return null;
  return { boundary, type: param('type') };
}

export function parseMultipart(body: Buffer, boundary: string, maxParts: number): Part[] {
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: Part[] = [];
  let pos = body.indexOf(delimiter);
  if (pos < 0) throw new MultipartError('no boundary found in the body');
  for (;;) {
    pos += delimiter.length;
    if (body.subarray(pos, pos + 2).toString('latin1') === '--') break;
    // Skip the line break after the delimiter (and any transport padding).
    const headerStart = body.indexOf('\r\n', pos);
    if (headerStart < 0) throw new MultipartError('truncated part');
    const headerEnd = body.indexOf('\r\n\r\n', headerStart);
    if (headerEnd < 0) throw new MultipartError('part without a header terminator');
    const headers = body.subarray(headerStart + 2, headerEnd).toString('latin1');
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delimiter]), headerEnd + 4);
    if (next < 0) throw new MultipartError('part without a closing boundary');
    const contentType = /^content-type:\s*(.+)$/im.exec(headers)?.[1]?.trim() ?? null;
    parts.push({ contentType, body: body.subarray(headerEnd + 4, next) });
    if (parts.length > maxParts) throw new MultipartError(`more than ${maxParts} parts`);
    pos = next + 2;
  }
  return parts;
}
