"""The async results recorder: replies on ``mesh.async.replies`` become the results of the
operations kept in DynamoDB (``functions.shared.operations_store``)."""
