// The pill that counts down to the room's expiry, once a second.

import { $ } from "./dom.js";
import { clockTime, duration } from "./format.js";

export class Countdown {
  constructor(expiresAt) {
    this.expiresAt = expiresAt;  // ms since the epoch, by the server's clock
    // The countdown follows the server's clock, not a phone's that is a few minutes off.
    this.skewMs = 0;
    this.stopped = false;
    this.tick = setInterval(() => this.render(), 1000);
  }

  render() {
    if (this.stopped) return;
    const left = this.expiresAt - (Date.now() + this.skewMs);
    const pill = $("countdown");
    pill.textContent = left > 0 ? `${duration(left)} left` : "expiring…";
    pill.className = left <= 0 ? "pill over" : left <= 60_000 ? "pill soon" : "pill";
    pill.title = `The room expires at ${clockTime(new Date(this.expiresAt - this.skewMs).toISOString())}`;
  }

  stop() {
    this.stopped = true;
    clearInterval(this.tick);
  }

  // Stops for good, showing `label` instead of the time.
  end(label) {
    this.stop();
    const pill = $("countdown");
    pill.textContent = label;
    pill.className = "pill over";
  }
}
