'use strict'
// The application's `mongodb` package (a peer dependency, as for mongo-locks),
// required on first use: for `lock._id` as an ObjectId and the collection of
// a manager made by connect(), on the real manager and the test locker alike.

let mongodb
/** `require('mongodb')`, resolved from this package: the application's copy; `needed` names what wants it in the error. */
function appMongodb(needed) {
  if (mongodb === undefined) {
    try {
      mongodb = require('mongodb')
    } catch (cause) {
      throw new Error(
        `mongo-locks-native: ${needed} needs the \`mongodb\` package (a peer dependency, as for mongo-locks): npm install mongodb`,
        { cause },
      )
    }
  }
  return mongodb
}

module.exports = { appMongodb }
