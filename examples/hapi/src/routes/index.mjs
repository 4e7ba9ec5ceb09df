import { updateBankDetails } from './bank-details.mjs'
import { processPayment } from './payments.mjs'

// Node 20 and 22 cannot parse `await using`, so reports.mjs is loaded only
// on Node 24+; the other routes work everywhere.
const nodeMajor = Number(process.versions.node.split('.')[0])
const awaitUsingRoutes = nodeMajor >= 24 ? [(await import('./reports.mjs')).rebuildReport] : []

export const routes = [updateBankDetails, processPayment, ...awaitUsingRoutes]
