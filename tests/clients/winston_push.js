// Pushes log lines to Strata with winston-loki, the Loki transport of the
// winston logger: snappy-compressed protobuf to /loki/api/v1/push.
// Usage: node winston_push.js <base url> <count>
const winston = require('winston');
const LokiTransport = require('winston-loki');

const [url, countArg] = process.argv.slice(2);
const count = Number(countArg);
const transport = new LokiTransport({
  host: url,
  labels: { app: 'node', client: 'winston-loki' },
  json: false,
  batching: true,
  interval: 0.2,
  format: winston.format.printf((info) => info.message),
  onConnectionError: (err) => {
    console.error('push failed:', err && err.message);
    process.exitCode = 1;
  },
});
const logger = winston.createLogger({ transports: [transport] });
for (let i = 0; i < count; i++) {
  logger.info(`node line ${i} took ${10 * (i + 1)}ms`, { labels: { level: i % 2 ? 'error' : 'info' } });
}
setTimeout(() => {
  transport.batcher.waitFlushed().then(() => process.exit(process.exitCode || 0));
}, 100);
