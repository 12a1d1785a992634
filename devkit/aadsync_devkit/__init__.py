"""The dev kit of airflow-provider-aadsync: the Graph emulator, the local Samba/PostgreSQL/Airflow world, seeding,
fixtures, the demo and the benchmarks. Tests and developers use it; the product package never imports it."""
