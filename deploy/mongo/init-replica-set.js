// One-shot (the mongo-init service): initiates the replica set and creates the application's
// user with readWrite on its database only. Idempotent: a second run changes nothing.
// Members: MONGO_REPLICA_MEMBERS (host:port,...), the first one listed is where this runs.
const env = process.env;
db.getSiblingDB('admin').auth(env.MONGO_INITDB_ROOT_USERNAME, env.MONGO_INITDB_ROOT_PASSWORD);
const members = (env.MONGO_REPLICA_MEMBERS || 'mongo:27017').split(',').map((host, i) => ({ _id: i, host: host.trim() }));
let initiated = true;
try {
  rs.status();
} catch (e) {
  initiated = false;
}
if (!initiated) {
  rs.initiate({ _id: env.MONGO_REPLICA_SET || 'rs0', members });
  print(`replica set initiated with ${members.length} member(s)`);
} else {
  print('replica set already initiated');
}
// Majority writes need a primary: wait for the election.
for (let i = 0; i < 120 && !db.hello().isWritablePrimary; i++) sleep(500);
if (!db.hello().isWritablePrimary) throw new Error('no primary after 60 s');
const appDb = db.getSiblingDB(env.MONGO_APP_DB || 'casecollab');
if (!appDb.getUser(env.MONGO_APP_USER)) {
  appDb.createUser({ user: env.MONGO_APP_USER, pwd: env.MONGO_APP_PASSWORD, roles: [{ role: 'readWrite', db: appDb.getName() }] });
  print(`user ${env.MONGO_APP_USER} created`);
}
