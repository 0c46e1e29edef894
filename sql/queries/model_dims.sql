-- The dimension of a registered embedding model ($1: model).
SELECT m.dims FROM fractality.embedding_models m WHERE m.model = $1
