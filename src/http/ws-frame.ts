/** The JSON text frames of Parley's WebSockets (agent desk, customer page): `{"type": "...", ...}`. */
import { ParleyError } from '../errors.ts';

export type Frame = Record<string, unknown> & { type: string };

/** Parses one frame; INVALID_PARAMETER for binary, non-JSON or type-less frames. */
export function parseFrame(text: string | undefined): Frame {
  if (text === undefined) throw new ParleyError('INVALID_PARAMETER', 'Frames are JSON text.');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ParleyError('INVALID_PARAMETER', 'The frame is not valid JSON.');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v) || typeof (v as { type?: unknown }).type !== 'string') {
    throw new ParleyError('INVALID_PARAMETER', 'A frame is a JSON object with a string "type".');
  }
  return v as Frame;
}
