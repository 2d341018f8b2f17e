/**
 * How the gateway reaches a chat server node. In one process it is the node's ClientOps itself; split
 * apart (the HA issue) it becomes an HTTP/WebSocket client with the same interface.
 */
import type { ClientIdentity, ClientOperation, ClientReply, RequestChatInput, UploadInput } from '../chat-server/client-ops.ts';
import type { Position } from '../chat/transcript.ts';
import type { FileMeta } from '../chat/types.ts';

export interface NodeLink {
  requestChat(serviceName: string, input: RequestChatInput): Promise<ClientReply>;
  perform(chatId: string, serviceName: string, id: ClientIdentity, op: ClientOperation, position: Position): Promise<ClientReply>;
  upload(chatId: string, serviceName: string, id: ClientIdentity, file: UploadInput, position: Position): Promise<ClientReply>;
  download(chatId: string, serviceName: string, id: ClientIdentity, fileId: string): Promise<{ meta: FileMeta; bytes: Buffer }>;
}
