with

dates as (
    select * from {{ ref('dim_dates') }}
    where {{ in_partition_range('date_day') }}
),

daily_active_users as (
    select * from {{ ref('fct_daily_active_users') }}
),

purchases as (
    select * from {{ ref('int_purchases_in_eur') }}
    where {{ in_partition_range('event_at') }}
),

daily_purchases as (
    select
        cast(event_at as date) as revenue_date,
        -- Null, not understated, when a purchase of the day has no EUR rate.
        case
            when count(revenue_eur) = count(*) then cast(sum(revenue_eur) as decimal(18, 2))
        end as revenue_eur,
        count(*) as orders,
        count(distinct user_id) as purchasers
    from purchases
    group by 1
),

daily_totals as (
    select
        dates.date_day as revenue_date,
        case
            when daily_purchases.revenue_date is null then cast(0 as decimal(18, 2))
            else daily_purchases.revenue_eur
        end as revenue_eur,
        coalesce(daily_purchases.orders, 0) as orders,
        coalesce(daily_purchases.purchasers, 0) as purchasers,
        daily_active_users.dau as active_users
    from dates
    left join daily_purchases
        on dates.date_day = daily_purchases.revenue_date
    left join daily_active_users
        on dates.date_day = daily_active_users.activity_date
),

per_user as (
    select
        *,
        round({{ divide('revenue_eur', 'nullif(active_users, 0)') }}, 4) as arpu,
        round({{ divide('revenue_eur', 'nullif(purchasers, 0)') }}, 4) as arppu
    from daily_totals
),

final as (
    {{ daily_partition_rows('per_user', 'revenue_date') }}
)

select * from final
