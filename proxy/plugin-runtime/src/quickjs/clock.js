// `Date` reading a manual clock (plugin tests): `Date.now()`, `new Date()` and `Date()`
// tell the clock's time; everything else is the engine's own `Date`.
(function (global, now) {
  "use strict";
  const EngineDate = global.Date;
  class ClockDate extends EngineDate {
    constructor(...args) {
      if (args.length === 0) super(now());
      else super(...args);
    }
    static now() {
      return now();
    }
  }
  // `Date()` called without `new` returns the current time as a string.
  global.Date = new Proxy(ClockDate, {
    apply: () => new EngineDate(now()).toString(),
  });
});
