pub mod own_redis;
