// Type declarations for peercdn's browser integration (the npm package's
// ES module, and window.peercdn of the script tag). One source:
// web/static/peercdn.js.

/** Options: window.peercdnConfig before the script tag, or configure(). */
export interface Options {
  /** The tracker's WebSocket URL. Script tag: its own server's /ws. npm: required. */
  tracker?: string;
  /** Where the agent (peercdn.wasm) loads from. npm default: beside the module
   * (copy node_modules/peercdn/peercdn.wasm to your static files), or
   * "https://TRACKER/peercdn.wasm" for the tracker's own build of the same version. */
  agentURL?: string;
  /** Where Go's wasm_exec.js loads from (default: beside the agent's base). */
  wasmExecURL?: string;
  /** Serve segments to other viewers (default true). Live. */
  upload?: boolean;
  /** Cap on upload to all peers, bytes/s (0: none). Live. */
  uploadBytesPerSecond?: number;
  /** On a metered connection (Save-Data, or cellular where the Network
   * Information API tells): 'consume-only' (default) takes from peers but
   * uploads nothing; 'upload' treats it like any other. Live. */
  metered?: 'consume-only' | 'upload';
  /** In a hidden tab: 'normal' (default) or 'consume-only'. Live. */
  hiddenTab?: 'normal' | 'consume-only';
  /** Connected peers per swarm, 1..64 (default 8, 4 with mobile). Live. */
  maxPeers?: number;
  /** Segment cache, MB (default 256, 64 with mobile). At start. */
  cacheMB?: number;
  /** Smaller defaults for phones (peers, cache). At start. */
  mobile?: boolean;
  /** Longest wait for a peer before the CDN, ms (default 2500). Live. */
  maxWaitMs?: number;
  /** Reserve kept for the CDN before a segment is due, ms (default 1500). Live. */
  cdnSafetyMs?: number;
  /** Start the agent at the video's first frame, or this long after a player is attached if it does not play (default 8000), or after load with no player (default 3000), ms. At start. */
  startDelayMs?: number;
  /** Run the agent in a Web Worker, with only its peer connections on the page's main thread (default true; false, or where a worker cannot be made, the agent runs on the page). At start. */
  worker?: boolean;
  /** STUN/TURN servers (default: the tracker's). At start. */
  iceServers?: { urls: string[]; username?: string; credential?: string }[];
  /** Exchange segments through TURN relays (default: as the tracker says). At start. */
  allowRelay?: boolean;
  /** The CDN publishes peercdn-hashes.json beside its segments (default: as the tracker says). */
  hashManifests?: boolean;
  /** Wait for consent(true) before any peer connection (peers see each other's addresses). */
  consent?: boolean;
  /** A site's id for the content (default: the manifest URL). */
  contentId?: string;
  /** Agent debug logs in the console. */
  debug?: boolean;
}

/** What stats() returns: the page's players summed. */
export interface Stats {
  cdnBytes: number;
  p2pBytes: number;
  uploadBytes: number;
  /** Peers connected now. */
  peers: number;
  /** The tracker's rollout keeps this viewer on the CDN only. */
  control?: boolean;
  peersConnected?: number;
  peersFailed?: number;
  segments?: number;
  /** Bytes received from peers that never reached the player (transfers given up, copies that failed their check). */
  p2pWastedBytes?: number;
  /** The agent started. */
  ready: boolean;
  /** Why it did not (everything plays from the CDN), or null. */
  error: string | null;
}

/** Events and what each carries. */
export interface Events {
  /** The agent started. */
  ready: {};
  /** The agent could not start: the page plays from the CDN only. */
  error: { reason: string };
  /** A segment reached the player: by the agent (source cdn, p2p, mixed
   * or cache) or by the player's own CDN load. */
  segment: { source: 'cdn' | 'p2p' | 'mixed' | 'cache'; bytes: number; by: 'agent' | 'player'; seq?: number; ms?: number; url?: string };
  /** The agent failed a load: the player loads it from the CDN. */
  'segment-error': { url: string; reason: string };
  /** The player gave a load up (seek, quality switch). */
  'segment-abort': { url: string };
  /** A peer was sent a segment. */
  upload: { peer: string; seq: number; bytes: number };
  'peer-connected': { peer: string };
  /** A connected peer left or was closed. */
  'peer-gone': { peer: string };
  /** A negotiated connection never opened (NAT, firewall). */
  'peer-failed': { peer: string; reason: string };
  /** A peer sent bytes that failed verification and was dropped. */
  'peer-dropped': { peer: string };
  'tracker-connected': {};
  /** The tracker connection ended or failed; the agent reconnects after retryMs. */
  'tracker-disconnected': { reason: string; retryMs: number };
  /** The tracker's rollout (or kill switch) turned P2P on or off. */
  rollout: { p2p: boolean };
}

/** The subset of an hls.js instance peercdn uses. */
export interface HlsLike {
  config: object;
}

/** The subset of a Shaka Player peercdn uses. */
export interface ShakaPlayerLike {
  getMediaElement(): HTMLMediaElement | null;
}

/** The shaka-player module (import shaka from 'shaka-player'). */
export interface ShakaLib {
  net: { NetworkingEngine: unknown; HttpFetchPlugin: unknown };
  util: { Error: unknown; AbortableOperation: unknown };
}

/** The subset of a dash.js MediaPlayer peercdn uses. */
export interface DashjsPlayerLike {
  extend(parentNameString: string, childInstance: object, override: boolean): void;
  initialize(...args: unknown[]): void;
}

export interface Peercdn {
  /** The API's version. */
  readonly version: number;
  /** The build: the agent's content-hashed name, or the package version. */
  readonly release: string;
  /** Settles when the agent has started, or failed to (see stats().error). */
  readonly ready: Promise<void>;
  configure(options: Options): void;
  /** Route an hls.js instance's fragment loads through the agent. */
  hlsjs<H extends HlsLike>(hls: H): H;
  /** Route a Shaka Player's segment requests through the agent. */
  shaka<P extends ShakaPlayerLike>(player: P, shakaLib?: ShakaLib): P;
  /** Route a dash.js MediaPlayer's segment requests through the agent: call it after
   * MediaPlayer().create() and before player.initialize() (dash.js's extend). */
  dashjs<P extends DashjsPlayerLike>(player: P): P;
  stats(): Stats;
  on<K extends keyof Events>(kind: K, fn: (e: Events[K]) => void): void;
  off<K extends keyof Events>(kind: K, fn: (e: Events[K]) => void): void;
  /** Release every peer connection; the players go on from the CDN. */
  destroy(): Promise<void>;
  /** With {consent: true}: start (true) or stop for good (false). */
  consent(yes: boolean): Promise<void>;
}

declare const peercdn: Peercdn;
export default peercdn;
export declare const version: Peercdn['version'];
export declare const release: Peercdn['release'];
export declare const ready: Peercdn['ready'];
export declare const configure: Peercdn['configure'];
export declare const hlsjs: Peercdn['hlsjs'];
export declare const shaka: Peercdn['shaka'];
export declare const dashjs: Peercdn['dashjs'];
export declare const stats: Peercdn['stats'];
export declare const on: Peercdn['on'];
export declare const off: Peercdn['off'];
export declare const destroy: Peercdn['destroy'];
export declare const consent: Peercdn['consent'];

declare global {
  interface Window {
    /** The script tag's API. */
    peercdn?: Peercdn;
    peercdnConfig?: Options;
  }
}
