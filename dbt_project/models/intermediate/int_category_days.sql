{#-
    The grid the category facts report on: every day of the date spine times every category the catalog
    ever had, plus the whole shop ('all'), so a category nobody reached on a day is a 0, not a missing row.
-#}
with

dates as (
    select * from {{ ref('dim_dates') }}
),

product_versions as (
    select * from {{ ref('snap_products') }}
),

categories as (
    select distinct
        category,
        false as is_all_categories
    from product_versions
    union all
    select
        'all' as category,
        true as is_all_categories
),

final as (
    select
        dates.date_day as activity_date,
        categories.category,
        categories.is_all_categories
    from dates
    cross join categories
)

select * from final
