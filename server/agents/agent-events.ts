// In-process "the agents of this chain changed" signal, so WatchAgents answers at once
// instead of at its next poll. Other replicas' changes arrive by that poll.
import { EventEmitter } from "node:events";

export class AgentEvents {
  private readonly emitter = new EventEmitter().setMaxListeners(0);

  changed(chain: string): void {
    this.emitter.emit(chain);
  }

  /** Calls `listener` on every change of `chain` until the returned function is called. */
  subscribe(chain: string, listener: () => void): () => void {
    this.emitter.on(chain, listener);
    return () => this.emitter.off(chain, listener);
  }
}
