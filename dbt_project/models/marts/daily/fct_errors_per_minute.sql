with

errors as (
    select * from {{ ref('stg_app_errors') }}
    where {{ in_partition_range('event_at') }}
),

errors_per_minute as (
    select
        date_trunc('minute', event_at) as event_minute,
        event_source,
        error_code,
        count(*) as error_count,
        count(distinct session_id) as sessions
    from errors
    group by 1, 2, 3
),

final as (
    {{ daily_partition_rows('errors_per_minute', 'event_minute') }}
)

select * from final
